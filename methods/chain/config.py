"""CHAIN config schema (arXiv 2306.11056; ../shared/methods/chain.md). Defaults: the spec's small setting."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import ClassVar

from hydra.core.config_store import ConfigStore

from runners.schemas import check_choice

# margin is ColdStartAL's smallest_margin (top-1 − top-2); largest_margin is its (top-1 − lowest) gap.
STRATEGIES = (
    "random",
    "entropy",
    "margin",
    "largest_margin",
    "least_confidence",
    "coreset",
    "badge",
    "typiclust",
)
MODELS = ("linear", "mlp", "finetune")
ENCODER_SOURCES = ("pixels", "hub")
GRID_METRICS = ("accuracy", "ce")
OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("none", "constant", "grid", "meta", "chain")
# `constant_<λ>` is shorthand for schedule=constant, lam=<λ>, so that a sweep can put several constant
# λ beside the other schedules under one column key (the "best constant λ" baseline of the table).
_CONSTANT = re.compile(r"constant_([0-9.eE+-]+)")


@dataclass
class EncoderConfig:
    """The fixed features the learner sees. pixels: standardised pixels (offline). hub: the pooled output
    of a published backbone, ``transformers.AutoModel.from_pretrained(name)`` (a hub id, or a local folder
    in the same layout), its input standardised per channel; `data.hub` checks the name before a run."""

    source: str = "pixels"
    # The paper's setting (ColdStartAL): a linear model on the 512-d features of a self-supervised
    # ResNet-18 (CompRess, a .pth off the hub). conf/budget/chain/paper.yaml names the closest loadable one.
    name: str | None = None
    batch_size: int = 256

    def __post_init__(self) -> None:
        check_choice("method.encoder.source", self.source, ENCODER_SOURCES)
        if self.source == "hub" and not self.name:
            raise ValueError("method.encoder.source=hub needs method.encoder.name (hub id or local folder)")


@dataclass
class ChainConfig:
    _target_: str = "methods.chain.method.Chain"
    # Multi-process strategies it supports (runners.distributed.strategy_refusal): none.
    strategies: ClassVar[tuple[str, ...]] = ()
    name: str = "chain"
    # Active learning: random initial labels, then `rounds` queries of `query_size`, retraining from scratch.
    strategy: str = "entropy"
    n_initial: int = 20
    query_size: int = 10
    rounds: int = 10
    # Labelled validation split drawn from the pool once (grid / meta λ and early stopping use it).
    val_size: int = 100
    # ColdStartAL's --accumulate_val: round r (0-based) sees only the first (r + 1) · ⌊val_size / (rounds+1)⌋
    # of the split (a random order), so the validation labels grow with the budget; false: all of it.
    accumulate_val: bool = False
    # Learner: multinomial logistic regression (`linear`) or an MLP, on fixed features; or `finetune`, the
    # paper's deep setting (ColdStartAL's --ftall): the encoder's backbone trained with a linear head on the
    # images, from the pretrained weights every fit (methods/chain/finetune.py; needs encoder.source=hub),
    # with finetune_optimizer / finetune_lr in place of optimizer / lr (ColdStartAL: SGD, 0.005).
    model: str = "linear"
    hidden_dims: list[int] = field(default_factory=lambda: [128])
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    # Full-batch Adam (ColdStartAL: Adam 1e-3 with early stopping on the validation split).
    lr: float = 1e-2
    weight_decay: float = 0.0
    # adam, or sgd (momentum 0.9)
    optimizer: str = "adam"
    finetune_optimizer: str = "sgd"
    finetune_lr: float = 0.005
    train_steps: int = 300
    # Early stopping: keep the parameters of the best validation CE, checked every `eval_every` steps
    # (0 disables: the last parameters are kept).
    eval_every: int = 10
    patience: int = 10
    # Firth penalty λ: none | constant | grid | meta | chain (or constant_<λ>).
    schedule: str = "chain"
    lam: float = 0.1
    lam_grid: list[float] = field(default_factory=lambda: [0.0, 0.01, 0.1, 1.0, 3.0])
    # The grid's criterion on the validation split: accuracy (ColdStartAL's active_sampler_ft.py: the first
    # λ of the grid with the highest accuracy; the paper does not say otherwise) or ce (lowest CE).
    grid_metric: str = "accuracy"
    # Meta-learned λ: one differentiable inner SGD step, validation CE, Adam on λ = softplus(ρ).
    # meta_reset: λ and its optimiser start afresh every round (ColdStartAL re-creates its FirthRegularizer
    # each round); false carries them over between rounds.
    meta_reset: bool = True
    meta_inner_lr: float = 0.1
    meta_lr: float = 0.05
    meta_init: float = 0.1
    # CHAIN curriculum λ(t, n) = λ0 · (1 − t/T)^p · (n0 / n), T = chain_fade × train_steps; early stopping
    # starts at step T, once λ has reached 0 (methods/chain/schedule.py)
    chain_lam0: float = 1.0
    chain_power: float = 2.0
    chain_fade: float = 0.5
    # Early stopping starts at that step T for every schedule, not only CHAIN's (which needs it): one
    # stopping rule for all columns of the table, so they differ in λ only. On digits (small) waiting alone
    # moved λ = 0 from AULC 0.774 to 0.796 (entropy), as much as the curriculum. false: the others stop as
    # early as `patience` allows.
    same_stopping: bool = True
    # Expected calibration error bins.
    ece_bins: int = 15

    def __post_init__(self) -> None:
        if not isinstance(self.encoder, EncoderConfig):  # a mapping when built from a plain dict
            self.encoder = EncoderConfig(**dict(self.encoder))
        match = _CONSTANT.fullmatch(self.schedule)
        if match:
            self.schedule, self.lam = "constant", float(match.group(1))
        for key, valid in (
            ("strategy", STRATEGIES),
            ("model", MODELS),
            ("schedule", SCHEDULES),
            ("grid_metric", GRID_METRICS),
            ("optimizer", OPTIMIZERS),
            ("finetune_optimizer", OPTIMIZERS),
        ):
            check_choice(f"method.{key}", getattr(self, key), valid)
        for key in ("n_initial", "query_size", "val_size", "train_steps", "ece_bins"):
            if getattr(self, key) < 1:
                raise ValueError(f"method.{key}={getattr(self, key)} must be >= 1")
        if self.rounds < 0 or self.lam < 0 or min(self.lam_grid, default=0) < 0:
            raise ValueError("method.rounds, method.lam and method.lam_grid must be >= 0")
        if self.model == "finetune" and self.encoder.source != "hub":
            raise ValueError(
                "method.model=finetune trains a pretrained backbone: it needs method.encoder.source=hub and "
                f"method.encoder.name (got method.encoder.source={self.encoder.source})"
            )
        if not 0 < self.chain_fade < 1:
            raise ValueError(f"method.chain_fade={self.chain_fade} must be in (0, 1): a share of train_steps")

    @property
    def fit_optimizer(self) -> tuple[str, float]:
        """(optimiser, learning rate) of a fit: the fine-tuning pair for model=finetune."""
        if self.model == "finetune":
            return self.finetune_optimizer, self.finetune_lr
        return self.optimizer, self.lr

    @property
    def chain_steps(self) -> int:
        """T, the CHAIN curriculum's length in optimiser steps (at least 1)."""
        return max(1, round(self.chain_fade * self.train_steps))


def register(cs: ConfigStore) -> None:
    cs.store(group="schema/method", name="chain", node=ChainConfig)
