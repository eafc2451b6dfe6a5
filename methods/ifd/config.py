"""IFD (Cherry data) config schema. Defaults follow the paper and the official code (ifd.md)."""

from __future__ import annotations

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore

from data.config import InstructionSelectionConfig
from runners.schemas import check_choice

ARMS = ("ifd_top", "random", "ifd_bottom", "full")
VARIANTS = ("ifd", "ifd_ppl")


@dataclass
class IFDConfig(InstructionSelectionConfig):
    """The shared data / arm / tuning / evaluation keys (InstructionSelectionConfig) plus IFD's own."""

    _target_: str = "methods.ifd.method.IFD"
    name: str = "ifd"
    # Pre-experienced model: k-means over prompt embeddings, the [P25, P75] perplexity band of each
    # cluster, `per_cluster` evenly spaced instructions, a short fine-tune.
    clusters: int = 100
    per_cluster: int = 10
    pre_epochs: int = 1
    # Scoring and selection: drop IFD > margin, keep the top `rate` by IFD (or the bottom / random /
    # everything: the comparison arms).
    variant: str = "ifd"
    margin: float = 1.0
    rate: float = 0.05
    arm: str = "ifd_top"
    max_length: int = 512
    score_batch_size: int = 8  # measured fastest on CPU (bench/ifd_scoring.py): 8 > 16 > 32

    def __post_init__(self) -> None:
        super().__post_init__()
        for key, valid in (("arm", ARMS), ("variant", VARIANTS)):
            check_choice(f"method.{key}", getattr(self, key), valid)
        if not 0 < self.rate <= 1:
            raise ValueError(f"method.rate={self.rate} must be in (0, 1]")
        if min(self.clusters, self.per_cluster) < 1:
            raise ValueError("method.clusters and method.per_cluster must be >= 1")


def register(cs: ConfigStore) -> None:
    cs.store(group="schema/method", name="ifd", node=IFDConfig)
