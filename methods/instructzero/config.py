"""InstructZero config schema. Defaults are the paper's / official code's (../shared/methods/instructzero.md);
conf/budget/instructzero/{smoke,small}.yaml shrink them for the CPU."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from hydra.core.config_store import ConfigStore

from data.induction_tasks import GENERATED, OFFICIAL_TASKS
from runners.schemas import check_choice

# instructzero: BO with the instruction-coupled kernel. matern: the same BO with a Matérn kernel on z only.
# random: uniform random search in z. ape: the open LLM samples instructions from demos (no soft prompt).
ARMS = ("instructzero", "matern", "random", "ape")
BLACK_BOXES = ("local", "openai")
METRICS = ("official", "em", "f1", "es", "contains")
CACHES = ("run", "shared", "none")


@dataclass
class InstructZeroConfig:
    _target_: str = "methods.instructzero.method.InstructZero"
    # Multi-process strategies it supports (runners.distributed.strategy_refusal): none.
    strategies: ClassVar[tuple[str, ...]] = ()
    name: str = "instructzero"
    arm: str = "instructzero"
    # Task: a generated task name (data/induction_tasks.py GENERATED) with task_source "generated", or an
    # official task name with task_source "official" (the official repo's files by URL) or a local folder /
    # URL prefix holding the official raw/{induce,execute}/<task>.json files.
    task: str = "larger_number"
    task_source: str = "generated"
    # "official": the task's official metric (exact match unless TASK_TO_METRIC says otherwise).
    metric: str = "official"
    # Data: demonstration pool (the official prompt_gen_data, ≤ 100), demos shown to the open LLM, a fixed
    # dev set the black box is scored on during the search, and the test set of the final instruction.
    n_pool: int = 100
    n_demos: int = 10
    n_dev: int = 20
    n_test: int = 100
    split_seed: int = 0
    # Soft prompt p = A z, z ∈ [−1, 1]^d (the paper's random projection, uniform: run_instructzero.sh
    # RANDOM_PROJ='uniform', 5 soft tokens, intrinsic dim 10).
    intrinsic_dim: int = 10
    n_soft_tokens: int = 5
    projection: str = "uniform"
    # "official": A's entries U(−1, 1), unscaled, as run_instructzero.py initialises its projection
    # (torch.nn.init.uniform_(linear.weight, -1, 1)); the paper, as the spec records it, says "uniform"
    # and no scale (its text could not be read offline to check further).
    # "embedding": A rescaled so that A z has the embedding table's std (the CPU budgets: a 135M model's
    # embeddings are ~50× smaller than U(−1, 1) soft tokens).
    projection_scale: str = "official"
    max_instruction_tokens: int = 128
    # False: the whole decoded generation is the instruction, as the official code keeps it (its
    # post-processing is commented out). True: only the first non-empty line (the CPU budgets: a 135M
    # model rambles after it).
    instruction_first_line: bool = False
    # Black box: the same local model (SmolLM2 offline) or any OpenAI-compatible endpoint.
    black_box: str = "local"
    # local: an offline model name (data.llm.loader.OFFLINE_MODELS) or a hub name; None: the open LLM's
    # own weights, loaded once. openai: the model name sent to the endpoint.
    black_box_model: str | None = None
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    # The official black-box call (automatic_prompt_engineer/llm.py, GPT_Forward): max_tokens=256, T=0.
    black_box_max_tokens: int = 256
    black_box_batch_size: int = 20
    concurrency: int = 8
    # Zero-shot template of the official dev evaluation ("Instruction: v / Input: x / Output:").
    eval_template: str = "Instruction: {instruction}\n\nInput: {input}\n\nOutput:"
    # Responses cached on disk: in the run dir, shared by all runs (cache_dir()/instructzero), or not.
    response_cache: str = "run"
    # BO (official run_instructzero.py): 25 Sobol points, 5 iterations of 25 → 150 evaluations.
    n_init: int = 25
    n_iterations: int = 5
    batch_size: int = 25
    # CMA-ES maximises EI from the `n_starts` best points so far (σ0 0.8, population 50, ≤ 10 generations).
    n_starts: int = 25
    cma_sigma0: float = 0.8
    cma_popsize: int = 50
    cma_max_generations: int = 10
    # Jitter of (K_L + εI)^{-1} in the instruction-coupled kernel (kernel.py).
    kernel_jitter: float = 1e-4
    # APE-style proposals: APE's generation sampling settings.
    ape_temperature: float = 0.9
    ape_top_p: float = 0.9
    generation_batch_size: int = 8

    def __post_init__(self) -> None:
        for key, valid in (
            ("arm", ARMS),
            ("black_box", BLACK_BOXES),
            ("metric", METRICS),
            ("response_cache", CACHES),
            ("projection", ("uniform", "normal")),
            ("projection_scale", ("embedding", "official")),
        ):
            check_choice(f"method.{key}", getattr(self, key), valid)
        positive = (
            "n_pool", "n_demos", "n_dev", "n_test", "intrinsic_dim", "n_soft_tokens",
            "max_instruction_tokens", "black_box_max_tokens", "black_box_batch_size", "concurrency",
            "n_init", "batch_size", "n_starts",
            "cma_popsize", "cma_max_generations", "generation_batch_size",
        )  # fmt: skip
        for key in positive:
            if getattr(self, key) < 1:
                raise ValueError(f"method.{key}={getattr(self, key)} must be >= 1")
        if self.n_iterations < 0:
            raise ValueError(f"method.n_iterations={self.n_iterations} must be >= 0")
        if self.n_demos > self.n_pool:
            raise ValueError(f"method.n_demos={self.n_demos} must be <= method.n_pool={self.n_pool}")
        if self.black_box == "openai" and not self.black_box_model:
            raise ValueError(
                "method.black_box=openai needs method.black_box_model (the endpoint's model name)"
            )
        if self.task_source == "generated":
            check_choice("method.task", self.task, tuple(GENERATED))
        elif self.task_source == "official":
            check_choice("method.task", self.task, OFFICIAL_TASKS)
        if "{instruction}" not in self.eval_template or "{input}" not in self.eval_template:
            raise ValueError("method.eval_template must contain {instruction} and {input}")

    @property
    def budget(self) -> int:
        """Black-box evaluations (objective queries) of every arm: the initial design plus the batches."""
        return self.n_init + self.n_iterations * self.batch_size


def register(cs: ConfigStore) -> None:
    cs.store(group="schema/method", name="instructzero", node=InstructZeroConfig)
