"""CHAIN pieces against hand-computed values: the Firth loss, the λ schedules, the query strategies,
the calibration metrics, and the penalty's effect on a fit."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from methods.chain.config import ChainConfig
from methods.chain.firth import firth_loss, firth_penalty
from methods.chain.learner import MetaLambda, evaluate, fit, forward, init_params
from methods.chain.method import aulc
from methods.chain.schedule import chain_lambda, fixed_lambda
from methods.chain.strategies import badge, coreset, entropy, least_confidence, margin, typiclust


def test_firth_loss_by_hand() -> None:
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, -1.0]])
    y = torch.tensor([0, 2])
    logp = torch.log_softmax(logits, -1)
    ce = -(logp[0, 0] + logp[1, 2]) / 2
    penalty = -(logp[0].sum() / 3 + logp[1].sum() / 3) / 2  # (1/N) Σ_i −(1/K) Σ_k log p_ik: one 1/K
    assert float(firth_loss(logits, y, 0.5)) == pytest.approx(float(ce + 0.5 * penalty), rel=1e-6)
    # the penalty is KL(U ‖ p) + log K: zero excess at the uniform prediction
    kl = F.kl_div(logp, torch.full_like(logp, 1 / 3), reduction="batchmean")
    assert float(firth_penalty(logits)) == pytest.approx(float(kl) + math.log(3), rel=1e-6)


def test_schedules() -> None:
    assert chain_lambda(0, 100, 20, 20, lam0=1.0, power=2.0) == pytest.approx(1.0)
    assert chain_lambda(50, 100, 20, 20, lam0=1.0, power=2.0) == pytest.approx(0.25)
    assert chain_lambda(100, 100, 40, 20, lam0=1.0, power=2.0) == pytest.approx(0.0, abs=1e-12)
    # halves as the labelled set doubles
    assert chain_lambda(0, 100, 40, 20, lam0=1.0, power=2.0) == pytest.approx(0.5)
    assert fixed_lambda("none", 0.3)(7) == 0.0 and fixed_lambda("constant", 0.3)(7) == 0.3
    cfg = ChainConfig(schedule="constant_0.03")
    assert (cfg.schedule, cfg.lam) == ("constant", 0.03)
    with pytest.raises(ValueError, match=r"method\.schedule"):
        ChainConfig(schedule="cosine")


def test_uncertainty_strategies_pick_the_uncertain_points() -> None:
    probs = torch.tensor([[0.9, 0.05, 0.05], [0.34, 0.33, 0.33], [0.5, 0.5, 0.0], [0.6, 0.2, 0.2]])
    assert entropy(probs, 1).tolist() == [1]
    assert margin(probs, 1).tolist() == [2]  # the two top classes tie exactly
    assert least_confidence(probs, 1).tolist() == [1]


def test_coreset_takes_the_farthest_points() -> None:
    pool = torch.tensor([[0.0, 0.1], [5.0, 0.0], [0.0, 9.0], [4.9, 0.1]])
    labelled = torch.tensor([[0.0, 0.0]])
    assert coreset(pool, labelled, 2).tolist() == [2, 1]


def test_badge_distances_match_explicit_gradient_embeddings() -> None:
    gen = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(50, 4, generator=gen), -1)
    emb = torch.randn(50, 6, generator=gen)
    r = probs.clone()
    r[torch.arange(50), probs.argmax(-1)] -= 1
    g = (r[:, :, None] * emb[:, None, :]).flatten(1)  # (p − e_ŷ) ⊗ h, materialised
    chosen = badge(probs, emb, 5, torch.Generator().manual_seed(1))
    assert chosen[0] == int(g.norm(dim=1).argmax()) and len(set(chosen.tolist())) == 5
    # k-means++ with squared distances from the explicit embeddings draws the same points
    gen2 = torch.Generator().manual_seed(1)
    picked, min_d = [chosen[0]], ((g - g[chosen[0]]) ** 2).sum(1)
    for _ in range(4):
        w = min_d.clone()
        w[picked] = 0
        i = int(torch.multinomial(w.double(), 1, generator=gen2))
        picked.append(i)
        min_d = torch.minimum(min_d, ((g - g[i]) ** 2).sum(1))
    assert picked == chosen.tolist()


def test_typiclust_covers_unlabelled_clusters() -> None:
    gen = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    pool = torch.cat([c + 0.5 * torch.randn(30, 2, generator=gen) for c in centres])
    labelled = centres[:1] + 0.1
    chosen = typiclust(pool, labelled, 2, seed=0)
    blobs = sorted(int(i) // 30 for i in chosen)
    assert blobs == [1, 2]  # the two blobs without labels, one point each
    for i in chosen:  # the most typical point lies near its blob's centre
        assert (pool[i] - centres[int(i) // 30]).norm() < 0.8


def test_ece_and_aulc_by_hand() -> None:
    # two samples, confidence 0.9 (correct) and 0.6 (wrong): bins hold one each
    logits = torch.log(torch.tensor([[0.9, 0.1], [0.6, 0.4]]))
    params = [torch.eye(2), torch.zeros(2)]
    m = evaluate(params, logits, torch.tensor([0, 1]), bins=10)
    assert m["accuracy"] == pytest.approx(0.5)
    assert m["ece"] == pytest.approx(0.5 * (1 - 0.9) + 0.5 * 0.6)
    assert m["nll"] == pytest.approx(-(math.log(0.9) + math.log(0.4)) / 2, rel=1e-5)
    assert aulc([10, 20, 40], [0.5, 0.7, 0.9]) == pytest.approx((0.6 * 10 + 0.8 * 20) / 30)


def _toy(n: int = 30, d: int = 5, k: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % k
    return torch.randn(n, d, generator=gen) + 2.0 * F.one_hot(y, d).float()[:, :d], y


def test_firth_pulls_predictions_toward_uniform() -> None:
    x, y = _toy()
    xv, yv = _toy(seed=1)
    common = dict(steps=200, lr=0.05, weight_decay=0.0, eval_every=0, patience=1)
    ent = []
    for lam in (0.0, 1.0):
        result = fit(
            [5, 3], x, y, xv, yv, torch.Generator().manual_seed(0), lam_at=lambda s, lam=lam: lam, **common
        )
        p = torch.softmax(forward(result.params, x), -1)
        ent.append(float(-(p * p.log()).sum(-1).mean()))
    assert ent[1] > ent[0] + 0.1


def test_meta_lambda_moves_and_stays_positive() -> None:
    x, y = _toy()
    xv, yv = _toy(seed=1)
    meta = MetaLambda(init=0.5, inner_lr=0.5, lr=0.1)
    params = init_params([5, 8, 3], torch.Generator().manual_seed(0))
    lams = [meta.step(params, x, y, xv, yv) for _ in range(5)]
    assert all(lam > 0 for lam in lams) and lams[-1] != pytest.approx(0.5)
    state = meta.state_dict()
    other = MetaLambda(init=0.1, inner_lr=0.5, lr=0.1)
    other.load_state_dict(state)
    assert other.lam == pytest.approx(meta.lam)
    assert np.isfinite(lams).all()
