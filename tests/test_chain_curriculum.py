"""CHAIN's curriculum fades within every fit, early-stopped or not (issue 14): λ has reached its final value
(0) when early stopping fires, and the kept parameters were trained at that value."""

from __future__ import annotations

import pytest
import torch

from methods.chain.config import ChainConfig
from methods.chain.learner import fit
from methods.chain.method import Chain


def overfitting_task(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Few samples in many dimensions, one weak informative direction: the validation CE soon rises."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(24) % 2
    x = torch.randn(24, 40, generator=gen)
    x[:, 0] += 0.8 * (2 * y - 1)
    return x, y


CFG = dict(schedule="chain", n_initial=24, train_steps=400, lr=0.05, eval_every=5, patience=4)


def test_lambda_reaches_its_final_value_when_early_stopping_fires() -> None:
    (x, y), (xv, yv) = overfitting_task(0), overfitting_task(1)
    chain = Chain(**CFG)
    result, lam_start = chain.train_round([40, 2], x, y, xv, yv, torch.Generator().manual_seed(0), None)
    assert lam_start == pytest.approx(1.0)  # λ0 · n0/n with n = n0
    assert result.steps < CFG["train_steps"]  # early stopping fired
    assert result.steps > chain.cfg.chain_steps == 200  # ... only after the curriculum
    assert result.lam_last == pytest.approx(0.0, abs=1e-12)
    assert result.lam_kept == pytest.approx(0.0, abs=1e-12)  # the kept parameters: trained at λ = 0


def test_without_the_curriculum_the_same_fit_stops_early() -> None:
    """The task does early-stop a plain fit well before the curriculum's length: the test above is about
    the stopping rule, not a fit that would have run on anyway."""
    (x, y), (xv, yv) = overfitting_task(0), overfitting_task(1)
    plain = fit(
        [40, 2],
        x,
        y,
        xv,
        yv,
        torch.Generator().manual_seed(0),
        steps=400,
        lr=0.05,
        weight_decay=0.0,
        eval_every=5,
        patience=4,
        lam_at=lambda _s: 0.0,
    )
    assert plain.steps < 200


def test_curriculum_length_follows_the_budget() -> None:
    assert ChainConfig(train_steps=3000).chain_steps == 1500
    assert ChainConfig(train_steps=40, chain_fade=0.25).chain_steps == 10
    with pytest.raises(ValueError, match="chain_fade"):
        ChainConfig(chain_fade=1.0)


@pytest.mark.parametrize("same_stopping", [True, False])
def test_every_schedule_shares_chains_stopping_rule_unless_told_otherwise(same_stopping: bool) -> None:
    (x, y), (xv, yv) = overfitting_task(0), overfitting_task(1)
    chain = Chain(**CFG | {"schedule": "none", "same_stopping": same_stopping})
    result, _ = chain.train_round([40, 2], x, y, xv, yv, torch.Generator().manual_seed(0), None)
    assert (result.steps > chain.cfg.chain_steps) is same_stopping
