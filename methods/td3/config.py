"""TD3 config schema: the TD3 paper's values (arXiv 1802.09477, Sec. 5 and Table 3) on the shared loop."""

from __future__ import annotations

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore

from runners.off_policy.config import OffPolicyConfig


@dataclass
class TD3Config(OffPolicyConfig):
    """Loop keys (γ 0.99, τ 0.005, the budget's steps and update-to-data ratio) are OffPolicyConfig's; in the
    ERC table TD3 runs the same budget as ERC and SAC (conf/budget/off_policy), 256-256 MLPs (model=mlp).

    The paper's Table 3 has Adam 1e-3 and batch 100 on 400-300 MLPs; the authors' repository (sfujim/TD3,
    TD3.py since its 2019 update) uses 3e-4, batch 256 and 256-256. Like the other methods of the table we
    run the budget's batch (256) and the 256-256 MLPs; the learning rates are the paper's, and
    ``actor_lr=3e-4 critic_lr=3e-4`` gives the repository's."""

    _target_: str = "methods.td3.method.TD3"
    name: str = "td3"
    actor_lr: float = 1e-3
    critic_lr: float = 1e-3
    # Target policy smoothing (Eq. 14): ã = clip(μ̄(s′) + clip(ε, −c, c), −1, 1), ε ~ N(0, σ̃²).
    policy_noise: float = 0.2
    noise_clip: float = 0.5
    # Exploration: a = clip(μ(s) + N(0, σ²), −1, 1) in the normalised action box.
    expl_noise: float = 0.1
    # Delayed policy updates (Sec. 5.2): actor and both targets once every `policy_every` (d) critic steps.
    policy_every: int = 2

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("policy_noise", "noise_clip", "expl_noise"):
            if getattr(self, key) < 0:
                raise ValueError(f"method.{key}={getattr(self, key)} must be >= 0")


def register(cs: ConfigStore) -> None:
    cs.store(group="schema/method", name="td3", node=TD3Config)
