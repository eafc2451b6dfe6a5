"""AlpaGasus config schema. Defaults follow the paper (alpagasus.md): accuracy grading, keep ≥ 4.5."""

from __future__ import annotations

from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore

from data.config import InstructionSelectionConfig, LLMClientConfig
from data.instructions.alpaca_eval import AlpacaEvalConfig
from data.instructions.leaderboard import LeaderboardConfig
from runners.schemas import check_choice

# filtered: the grader's kept records. random: a random subset of the same size. full: everything.
# oracle_filtered: a DIAGNOSTIC, not the paper: a noisy oracle that knows which responses were corrupted
# (each label flipped with probability oracle_noise) grades instead of an LLM, to show what the pipeline
# does with a good grader when the offline grader is too weak (alpagasus.md, "Small scale").
ARMS = ("filtered", "random", "full", "oracle_filtered")
# generate: the paper's protocol, the grader writes its score on the first line (parsed, else unparsed).
# score_logits: a named variant, the expected score over the next-token probabilities of "0".."5".
GRADING = ("generate", "score_logits")
DIMENSIONS = ("accuracy", "helpfulness")


@dataclass
class AlpaGasusConfig(InstructionSelectionConfig):
    _target_: str = "methods.alpagasus.method.AlpaGasus"
    name: str = "alpagasus"
    arm: str = "filtered"
    grader: LLMClientConfig = field(default_factory=LLMClientConfig)
    grading: str = "generate"
    dimension: str = "accuracy"
    # Keep score ≥ threshold (the paper: 4.5, 9,229 of Alpaca's 52,002 = 17.7%). With keep_share set,
    # keep that share of the data with the highest scores instead (for graders whose scale is off).
    threshold: float = 4.5
    keep_share: float | None = None
    oracle_noise: float = 0.1
    # Where grader replies are cached (None: <REPROLAB_CACHE>/llm_responses.sqlite, shared by runs).
    response_cache: str | None = None
    # The benchmarks IFD's paper budget turns on (off by default, and here: the AlpaGasus paper's own
    # benchmark numbers are NOT FOUND): the Open LLM Leaderboard tasks through lm-eval, AlpacaEval's win rate.
    leaderboard: LeaderboardConfig = field(default_factory=LeaderboardConfig)
    alpaca_eval: AlpacaEvalConfig = field(default_factory=AlpacaEvalConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        for key, valid in (("arm", ARMS), ("grading", GRADING), ("dimension", DIMENSIONS)):
            check_choice(f"method.{key}", getattr(self, key), valid)
        if self.keep_share is not None and not 0 < self.keep_share <= 1:
            raise ValueError(f"method.keep_share={self.keep_share} must be in (0, 1] or null")
        if not 0 <= self.oracle_noise <= 0.5:
            raise ValueError(f"method.oracle_noise={self.oracle_noise} must be in [0, 0.5]")
        if self.grading == "score_logits" and self.grader.backend != "local":
            raise ValueError(
                "method.grading=score_logits reads token probabilities: it needs method.grader.backend=local"
            )


def register(cs: ConfigStore) -> None:
    cs.store(group="schema/method", name="alpagasus", node=AlpaGasusConfig)
