"""H2O config schema. Budgets follow the paper: heavy = recent = 10% of the sequence (20% in total)."""

from __future__ import annotations

from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore

from runners.schemas import check_choice

POLICIES = ("full", "h2o", "local", "streaming", "random")
EVALUATIONS = ("perplexity", "generate", "lm_eval")
MASKS = ("paper", "official")
PAPER_TASKS = ("copa", "mathqa", "openbookqa", "piqa", "rte", "winogrande")


@dataclass
class H2OConfig:
    _target_: str = "methods.h2o.method.H2O"
    name: str = "h2o"
    # full | h2o | local (recent only) | streaming (sinks + recent) | random (recent + random rest)
    policy: str = "h2o"
    # KV entries kept per layer and head: a ratio of the reference length in (0, 1], or a count (> 1).
    # The reference length is the evaluated stream (perplexity), the prompt (generation) or the whole
    # request, context and continuation (lm_eval, as the paper's accuracy-vs-budget results).
    budget: float = 0.2
    # Share of the budget given to heavy hitters (h2o) or random picks (random); the rest is recent.
    heavy_fraction: float = 0.5
    # StreamingLLM's attention-sink tokens at the start of the sequence.
    sinks: int = 4
    evaluation: str = "perplexity"
    # perplexity: "pydoc" (the stdlib's documentation topics: real English, offline) or a hub dataset
    # "<name>[:<config>]:<split>" read through `datasets` (online), e.g. "wikitext:wikitext-2-raw-v1:test",
    # or a local UTF-8 text file by path (methods.h2o.method.read_text).
    text: str = "pydoc"
    max_tokens: int = 2048
    # Streams decoded together (the official code is batch-1 only).
    batch_size: int = 1
    # generate
    prompt: str = "Explain in two sentences why the sky is blue."
    max_new_tokens: int = 64
    chat_template: bool = True
    # lm_eval: the paper's six tasks by lm-eval name (their datasets come from the hub), or local task
    # YAML files (methods.h2o.lm_eval_tasks.load_tasks). Every query of a request (context and
    # continuation) sees only what the budget keeps; the budget is a ratio of the whole request.
    tasks: list[str] = field(default_factory=lambda: list(PAPER_TASKS))
    # The per-query mask of lm_eval: "paper" replays the evicting cache (Alg. 1, the default); "official"
    # is FMInference/H2O's lm-eval simulation (h2o_hf/utils_lm_eval/modify_opt.py), which ranks heavy
    # hitters by the unmasked attention (methods.h2o.query_mask.OfficialMask); h2o and local only.
    mask: str = "paper"
    # Shots per request: 5 in the official scripts (FMInference/H2O h2o_hf/scripts/lm_eval/*.sh, shots=5).
    num_fewshot: int = 5
    limit: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        for key, valid in (("policy", POLICIES), ("evaluation", EVALUATIONS), ("mask", MASKS)):
            check_choice(f"method.{key}", getattr(self, key), valid)
        if self.budget <= 0:
            raise ValueError(f"method.budget={self.budget} must be > 0 (a ratio in (0, 1] or a count)")
        if self.budget > 1 and self.evaluation == "perplexity" and self.budget > self.max_tokens:
            raise ValueError(
                f"method.budget={self.budget:g} is larger than the sequence "
                f"(method.max_tokens={self.max_tokens})"
            )
        if not 0 <= self.heavy_fraction <= 1:
            raise ValueError(f"method.heavy_fraction={self.heavy_fraction} must be in [0, 1]")
        if self.mask == "official" and (self.policy not in ("full", "h2o", "local") or self.budget > 1):
            raise ValueError(
                "method.mask=official (the official lm-eval simulation) takes method.policy=h2o|local|full "
                f"and a budget ratio <= 1, not policy={self.policy!r}, budget={self.budget:g}"
            )
        if self.num_fewshot < 0 or (self.limit is not None and self.limit < 1):
            raise ValueError(f"method.num_fewshot={self.num_fewshot} must be >= 0, method.limit >= 1 or null")
        if self.evaluation == "lm_eval" and not self.tasks:
            paper = ", ".join(PAPER_TASKS)
            raise ValueError(f"method.tasks is empty: name lm-eval tasks (the paper's: {paper})")
        if self.max_tokens < 2 or self.batch_size < 1 or self.max_new_tokens < 1 or self.sinks < 0:
            raise ValueError(
                "method.max_tokens >= 2, batch_size >= 1, max_new_tokens >= 1, sinks >= 0 required"
            )

    def budgets(self, reference_length: int) -> tuple[int, int]:
        """(total entries kept, of which recent) for a sequence of ``reference_length`` tokens."""
        total = round(self.budget * reference_length) if self.budget <= 1 else int(self.budget)
        total = max(total, 1)
        if self.policy in ("h2o", "random"):
            return total, max(total - round(total * self.heavy_fraction), 0)
        return total, total


def register(cs: ConfigStore) -> None:
    cs.store(group="schema/method", name="h2o", node=H2OConfig)
