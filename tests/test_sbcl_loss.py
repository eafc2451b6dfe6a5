"""The SBCL loss against a per-anchor reference written from the spec, a hand-computed value, and SupCon."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from methods.sbcl.loss import sbcl_loss, supcon_loss


def reference_sbcl(z, y, s, tau, tau_base, gamma, class_tau):
    """shared/methods/sbcl.md, one anchor at a time, sets as python sets."""
    n = len(z)
    b = n // 2
    y, s = y.repeat(2).tolist(), s.repeat(2).tolist()
    total = 0.0
    for i in range(n):
        plus = (i + b) % n
        others = [a for a in range(n) if a != i]
        denom = sum(math.exp(float(z[i] @ z[a]) / tau) for a in others)
        pos = [p for p in others if s[p] == s[i]]
        l_sub = -sum(math.log(math.exp(float(z[i] @ z[p]) / tau) / denom) for p in pos) / len(pos)
        t = float(class_tau[y[i]])
        contrast = {a for a in range(n) if s[a] != s[i]} | {plus}
        positives = {p for p in range(n) if y[p] == y[i] and s[p] != s[i]} | {plus}
        denom_c = sum(math.exp(float(z[i] @ z[a]) / t) for a in contrast)
        l_cls = -sum(math.log(math.exp(float(z[i] @ z[p]) / t) / denom_c) for p in positives) / len(positives)
        total += (tau / tau_base) * l_sub + gamma * l_cls
    return total / n


def reference_supcon(z, y, tau, tau_base):
    """Khosla et al. 2020, L^sup_out, written plainly."""
    n = len(z)
    y = y.repeat(2).tolist()
    total = 0.0
    for i in range(n):
        others = [a for a in range(n) if a != i]
        denom = sum(math.exp(float(z[i] @ z[a]) / tau) for a in others)
        pos = [p for p in others if y[p] == y[i]]
        total += (
            -(tau / tau_base)
            * sum(math.log(math.exp(float(z[i] @ z[p]) / tau) / denom) for p in pos)
            / len(pos)
        )
    return total / n


def random_batch(b: int = 12, d: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    z = F.normalize(torch.randn(2 * b, d, generator=g, dtype=torch.float64), dim=1)
    y = torch.randint(0, 3, (b,), generator=g)
    s = y * 2 + torch.randint(0, 2, (b,), generator=g)  # two subclasses per class
    return z, y, s


def test_vectorised_loss_matches_the_per_anchor_reference() -> None:
    z, y, s = random_batch()
    class_tau = torch.tensor([0.08, 0.1, 0.13], dtype=torch.float64)
    got = sbcl_loss(z, y, s, tau=0.1, tau_base=0.07, gamma=0.25, class_tau=class_tau)
    assert float(got.loss) == pytest.approx(reference_sbcl(z, y, s, 0.1, 0.07, 0.25, class_tau), rel=1e-9)
    assert math.isfinite(float(got.cls)) and float(got.cls) > 0


def test_hand_computed_value_on_orthogonal_embeddings() -> None:
    # Four mutually orthogonal unit vectors: every off-diagonal similarity is 0, so each anchor's softmax is
    # uniform over its 3 others and L_sub = log 3 (its only positive is the other view).
    z = torch.eye(4, dtype=torch.float64)
    y = torch.tensor([0, 1])
    out = sbcl_loss(z, y, y, tau=0.1, tau_base=0.05, gamma=0.0)
    assert float(out.loss) == pytest.approx(2 * math.log(3))
    # the class term: contrast set {other-class views} ∪ {i⁺} = 3 items, one positive → log 3 as well
    out = sbcl_loss(z, y, y, tau=0.1, tau_base=0.05, gamma=0.5)
    assert float(out.loss) == pytest.approx(2 * math.log(3) + 0.5 * math.log(3))


def test_one_subclass_per_class_without_class_term_is_supcon() -> None:
    z, y, _ = random_batch(seed=1)
    ours = supcon_loss(z, y, tau=0.1, tau_base=0.07)
    assert float(ours) == pytest.approx(reference_supcon(z, y, 0.1, 0.07), rel=1e-9)
    # the SBCL call with every K_c = 1 (s = y) and γ = 0 is the same number
    assert float(sbcl_loss(z, y, y, 0.1, 0.07, 0.0).loss) == pytest.approx(float(ours), rel=1e-12)


def test_gradients_are_finite_and_large_logits_do_not_overflow() -> None:
    z, y, s = random_batch(b=16, d=4, seed=2)
    z = z.float().requires_grad_(True)
    out = sbcl_loss(z, y, s, tau=0.01, tau_base=0.07, gamma=0.25, class_tau=torch.full((3,), 0.01))
    out.loss.backward()
    assert torch.isfinite(out.loss) and torch.isfinite(z.grad).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gpu_matches_cpu() -> None:
    z, y, s = random_batch(seed=3)
    tau_c = torch.tensor([0.08, 0.1, 0.13], dtype=torch.float64)
    cpu = sbcl_loss(z, y, s, class_tau=tau_c).loss
    gpu = sbcl_loss(z.cuda(), y.cuda(), s.cuda(), class_tau=tau_c.cuda()).loss
    assert float(gpu) == pytest.approx(float(cpu), rel=1e-9)
