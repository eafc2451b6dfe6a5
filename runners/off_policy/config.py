"""The loop keys every off-policy method shares; a method's schema subclasses this one.

Budgets (conf/budget/off_policy/<scale>.yaml, reused by erc, sac and td3) set only these keys, so one budget
file fits every method on the loop; a method's own keys (ERC's β, TD3's noise) live in its conf/method file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


@dataclass
class OffPolicyConfig:
    _target_: str = "???"
    # Multi-process strategies it supports (runners.distributed.strategy_refusal): none.
    strategies: ClassVar[tuple[str, ...]] = ()
    name: str = "???"
    gamma: float = 0.99
    tau: float = 0.005
    batch_size: int = 256
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    # Actor (and, where there are any, α and target networks) updated once every `policy_every` critic steps.
    policy_every: int = 2
    # Gradient steps per environment step.
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
        if not 0 <= self.gamma <= 1 or not 0 < self.tau <= 1:
            raise ValueError(f"method.gamma={self.gamma} must be in [0, 1], method.tau={self.tau} in (0, 1]")
        if self.eval_episodes < 1 or self.td_probe_size < 1:
            raise ValueError("method.eval_episodes and method.td_probe_size must be >= 1")
