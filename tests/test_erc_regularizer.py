"""The eigensubspace regulariser against hand-computed values (arXiv 2306.16750, critic loss)."""

from __future__ import annotations

import pytest
import torch

from methods.erc.regularizer import eigensubspace_penalty

BETA, CLIP = 0.005, 0.01


def test_zero_when_all_errors_are_equal() -> None:
    e = torch.full((2, 64), 3.5, requires_grad=True)
    penalty = eigensubspace_penalty(e, BETA, CLIP)
    penalty.backward()
    assert penalty.item() == pytest.approx(0.0, abs=1e-12)
    torch.testing.assert_close(e.grad, torch.zeros_like(e.grad), rtol=0, atol=1e-12)


def test_value_by_hand() -> None:
    # ē = 3; (e − ē)² = [4, 1, 0, 9]; β(e − ē)² = [0.02, 0.005, 0, 0.045] → clipped [0.01, 0.005, 0, 0.01]
    e = torch.tensor([[1.0, 2.0, 3.0, 6.0]])
    assert eigensubspace_penalty(e, BETA, CLIP).item() == pytest.approx(0.025 / 4)


def test_gradient_inside_the_clip_and_zero_outside() -> None:
    # ē = 4; e − ē = [−2, −1, −0.5, 3.5]; β(e − ē)² = [0.02, 0.005, 0.00125, 0.06125]: samples 1, 2 inside.
    e = torch.tensor([[2.0, 3.0, 3.5, 7.5]], requires_grad=True)
    eigensubspace_penalty(e, BETA, CLIP).backward()
    n = 4
    expected = torch.tensor([[0.0, 2 * BETA * -1.0 / n, 2 * BETA * -0.5 / n, 0.0]])
    torch.testing.assert_close(e.grad, expected)


def test_mean_is_detached() -> None:
    """ē carries no gradient: the derivative is 2β(e_i − ē)/N, not the full variance derivative."""
    e = torch.tensor([[0.0, 1.0]], requires_grad=True)  # ē = 0.5, β(e − ē)² = 0.00125 each: inside
    eigensubspace_penalty(e, BETA, CLIP).backward()
    torch.testing.assert_close(e.grad, torch.tensor([[2 * BETA * -0.5 / 2, 2 * BETA * 0.5 / 2]]))


def test_critics_are_summed_and_independent() -> None:
    a, b = torch.tensor([1.0, 2.0, 3.0, 6.0]), torch.tensor([0.0, 0.0, 1.0, 1.0])
    both = eigensubspace_penalty(torch.stack([a, b]), BETA, CLIP)
    alone = eigensubspace_penalty(a[None], BETA, CLIP) + eigensubspace_penalty(b[None], BETA, CLIP)
    assert both.item() == pytest.approx(alone.item())


def test_beta_zero_is_sac() -> None:
    assert eigensubspace_penalty(torch.randn(2, 32).pow(2), 0.0, CLIP).item() == 0.0


def test_larger_beta_shrinks_the_active_set() -> None:
    """A sample is regularised only while |e − ē| < sqrt(clip/β)."""
    e = torch.tensor([[0.0, 1.0, 2.0, 3.0, 4.0]], requires_grad=True)  # e − ē = [−2, −1, 0, 1, 2]
    active = []
    for beta in (0.001, 0.005, 0.02):
        e.grad = None
        eigensubspace_penalty(e, beta, CLIP).backward()
        active.append(int(torch.count_nonzero(e.grad)))
    assert active == [4, 2, 0]  # thresholds 3.16, 1.41, 0.71 (ē itself has zero gradient)
