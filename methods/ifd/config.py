"""IFD (Cherry data) config schema. Defaults follow the paper and the official code (ifd.md)."""

from __future__ import annotations

from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore

from data.config import InstructionSelectionConfig
from data.instructions.alpaca_eval import AlpacaEvalConfig
from data.instructions.leaderboard import LeaderboardConfig
from runners.schemas import check_choice

ARMS = ("ifd_top", "random", "ifd_bottom", "full")
VARIANTS = ("ifd", "ifd_ppl")


@dataclass
class IFDConfig(InstructionSelectionConfig):
    """The shared data / arm / tuning / evaluation keys (InstructionSelectionConfig) plus IFD's own."""

    _target_: str = "methods.ifd.method.IFD"
    name: str = "ifd"
    # Pre-experienced model (methods.ifd.pre_experience, the official data_by_cluster.py): k-means over
    # prompt embeddings, the [P_band_low, P_band_high] perplexity band of each cluster (the official
    # script's --low_th 25 --up_th 75), `per_cluster` strided instructions, a short fine-tune.
    clusters: int = 100
    per_cluster: int = 10
    band_low: float = 25.0
    band_high: float = 75.0
    pre_epochs: int = 1
    # Scoring and selection: drop IFD > margin, keep the top `rate` by IFD (or the bottom / random /
    # everything: the comparison arms).
    variant: str = "ifd"
    margin: float = 1.0
    rate: float = 0.05
    arm: str = "ifd_top"
    max_length: int = 512
    # Scoring packs the records' sequences into rows of `score_pack_tokens` tokens (a shared prefix stored
    # once, a block mask per sequence: methods/ifd/packing.py; 0: one padded sequence per row) and runs
    # `score_batch_size` rows per forward (bench/ifd_scoring.py --sweep times other settings).
    score_batch_size: int = 4
    score_pack_tokens: int = 256
    # Paper-scale benchmarks of the tuned model (off by default; conf/budget/<method>/paper.yaml sets them):
    # the Open LLM Leaderboard tasks through lm-eval, AlpacaEval's win rate against its reference answers.
    leaderboard: LeaderboardConfig = field(default_factory=LeaderboardConfig)
    alpaca_eval: AlpacaEvalConfig = field(default_factory=AlpacaEvalConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        for key, valid in (("arm", ARMS), ("variant", VARIANTS)):
            check_choice(f"method.{key}", getattr(self, key), valid)
        if not 0 < self.rate <= 1:
            raise ValueError(f"method.rate={self.rate} must be in (0, 1]")
        if self.score_batch_size < 1 or self.score_pack_tokens < 0:
            raise ValueError("method.score_batch_size must be >= 1 and method.score_pack_tokens >= 0")
        if min(self.clusters, self.per_cluster) < 1:
            raise ValueError("method.clusters and method.per_cluster must be >= 1")
        if not 0 <= self.band_low <= self.band_high <= 100:
            raise ValueError(
                f"method.band_low={self.band_low} and method.band_high={self.band_high} are percentiles: "
                "0 <= band_low <= band_high <= 100"
            )


def register(cs: ConfigStore) -> None:
    cs.store(group="schema/method", name="ifd", node=IFDConfig)
