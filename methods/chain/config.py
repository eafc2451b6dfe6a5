"""CHAIN config schema (arXiv 2306.11056; ../shared/methods/chain.md). Defaults: the spec's small setting."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import ClassVar

from hydra.core.config_store import ConfigStore

from runners.schemas import check_choice

STRATEGIES = ("random", "entropy", "margin", "least_confidence", "coreset", "badge", "typiclust")
MODELS = ("linear", "mlp")
FEATURES = ("pixels", "resnet18")
SCHEDULES = ("none", "constant", "grid", "meta", "chain")
# `constant_<λ>` is shorthand for schedule=constant, lam=<λ>, so that a sweep can put several constant
# λ beside the other schedules under one column key (the "best constant λ" baseline of the table).
_CONSTANT = re.compile(r"constant_([0-9.eE+-]+)")


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
    # Learner: multinomial logistic regression (`linear`) or an MLP, on fixed features.
    model: str = "linear"
    hidden_dims: list[int] = field(default_factory=lambda: [128])
    features: str = "pixels"
    # Full-batch Adam (ColdStartAL: Adam 1e-3 with early stopping on the validation split).
    lr: float = 1e-2
    weight_decay: float = 0.0
    train_steps: int = 300
    # Early stopping: keep the parameters of the best validation CE, checked every `eval_every` steps
    # (0 disables: the last parameters are kept).
    eval_every: int = 10
    patience: int = 10
    # Firth penalty λ: none | constant | grid | meta | chain (or constant_<λ>).
    schedule: str = "chain"
    lam: float = 0.1
    lam_grid: list[float] = field(default_factory=lambda: [0.0, 0.01, 0.1, 1.0, 3.0])
    # Meta-learned λ: one differentiable inner SGD step, validation CE, Adam on λ = softplus(ρ).
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
        match = _CONSTANT.fullmatch(self.schedule)
        if match:
            self.schedule, self.lam = "constant", float(match.group(1))
        for key, valid in (
            ("strategy", STRATEGIES),
            ("model", MODELS),
            ("features", FEATURES),
            ("schedule", SCHEDULES),
        ):
            check_choice(f"method.{key}", getattr(self, key), valid)
        for key in ("n_initial", "query_size", "val_size", "train_steps", "ece_bins"):
            if getattr(self, key) < 1:
                raise ValueError(f"method.{key}={getattr(self, key)} must be >= 1")
        if self.rounds < 0 or self.lam < 0 or min(self.lam_grid, default=0) < 0:
            raise ValueError("method.rounds, method.lam and method.lam_grid must be >= 0")
        if not 0 < self.chain_fade < 1:
            raise ValueError(f"method.chain_fade={self.chain_fade} must be in (0, 1): a share of train_steps")

    @property
    def chain_steps(self) -> int:
        """T, the CHAIN curriculum's length in optimiser steps (at least 1)."""
        return max(1, round(self.chain_fade * self.train_steps))


def register(cs: ConfigStore) -> None:
    cs.store(group="schema/method", name="chain", node=ChainConfig)
