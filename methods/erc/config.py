"""ERC/SAC config schema. Defaults are the official code's (DMControl/ERC.py, built on pytorch_sac)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from hydra.core.config_store import ConfigStore


@dataclass
class ERCConfig:
    _target_: str = "methods.erc.method.ERC"
    # Multi-process strategies it supports (runners.distributed.strategy_refusal): none.
    strategies: ClassVar[tuple[str, ...]] = ()
    name: str = "erc"
    # Eq. (ERC critic loss): L = Σ_j mean_i e_ij + mean_i clip(β (e_ij − ē_j)², 0, reg_clip). β = 0 is SAC.
    beta: float = 0.005
    reg_clip: float = 0.01
    # SAC
    gamma: float = 0.99
    tau: float = 0.005
    batch_size: int = 256
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    alpha_lr: float = 1e-4
    init_alpha: float = 0.1
    learn_alpha: bool = True
    # None means the usual −|A|.
    target_entropy: float | None = None
    log_std_min: float = -10.0
    log_std_max: float = 2.0
    # Actor, α and target networks are updated once every `policy_every` critic steps.
    policy_every: int = 2
    # Gradient steps per environment step. The class default of the official code is 1, its main.py uses 5.
    utd_ratio: int = 1
    buffer_size: int = 1_000_000
    # Agent steps (after action repeat) with uniformly random actions before learning starts.
    learning_starts: int = 25_000
    total_steps: int = 1_000_000
    eval_every: int = 10_000
    eval_episodes: int = 10
    # Transitions drawn from the replay buffer to measure the TD-error dispersion at each evaluation.
    td_probe_size: int = 10_000

    def __post_init__(self) -> None:
        positive = ("batch_size", "utd_ratio", "policy_every", "buffer_size", "total_steps", "eval_every")
        for key in positive:
            if getattr(self, key) < 1:
                raise ValueError(f"method.{key}={getattr(self, key)} must be >= 1")
        if self.beta < 0 or self.reg_clip < 0:
            raise ValueError(f"method.beta={self.beta} and method.reg_clip={self.reg_clip} must be >= 0")
        if not 0 <= self.gamma <= 1 or not 0 < self.tau <= 1:
            raise ValueError(f"method.gamma={self.gamma} must be in [0, 1], method.tau={self.tau} in (0, 1]")
        if self.eval_episodes < 1 or self.td_probe_size < 1:
            raise ValueError("method.eval_episodes and method.td_probe_size must be >= 1")


def register(cs: ConfigStore) -> None:
    cs.store(group="schema/method", name="erc", node=ERCConfig)
