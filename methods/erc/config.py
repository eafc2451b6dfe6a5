"""ERC/SAC config schema. Defaults are the official code's (DMControl/ERC.py, built on pytorch_sac)."""

from __future__ import annotations

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore

from runners.off_policy.config import OffPolicyConfig


@dataclass
class ERCConfig(OffPolicyConfig):
    """The loop keys (gamma, tau, batch, learning rates, utd_ratio, steps, evaluation) are OffPolicyConfig's,
    with the official code's defaults; the update-to-data ratio's class default there is 1, its main.py
    uses 5 (conf/budget/off_policy/paper.yaml)."""

    _target_: str = "methods.erc.method.ERC"
    name: str = "erc"
    # Eq. (ERC critic loss): L = Σ_j mean_i e_ij + mean_i clip(β (e_ij − ē_j)², 0, reg_clip). β = 0 is SAC.
    beta: float = 0.005
    reg_clip: float = 0.01
    # SAC's temperature α; actor, α and target networks are updated once every `policy_every` critic steps.
    alpha_lr: float = 1e-4
    init_alpha: float = 0.1
    learn_alpha: bool = True
    # None means the usual −|A|.
    target_entropy: float | None = None
    log_std_min: float = -10.0
    log_std_max: float = 2.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.beta < 0 or self.reg_clip < 0:
            raise ValueError(f"method.beta={self.beta} and method.reg_clip={self.reg_clip} must be >= 0")


def register(cs: ConfigStore) -> None:
    cs.store(group="schema/method", name="erc", node=ERCConfig)
