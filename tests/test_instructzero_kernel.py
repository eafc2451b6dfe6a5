"""InstructZero's instruction-coupled kernel against a hand computation, and one BO proposal step."""

from __future__ import annotations

import math

import pytest
import torch

from methods.instructzero.bo import propose, standardise
from methods.instructzero.kernel import InstructionCoupledKernel


def matern52(a: torch.Tensor, b: torch.Tensor, lengthscale: torch.Tensor) -> torch.Tensor:
    """k(r) = (1 + √5 r + 5 r² / 3) exp(−√5 r), r the length-scaled distance."""
    r = ((a[:, None, :] - b[None, :, :]) / lengthscale).pow(2).sum(-1).sqrt()
    return (1 + math.sqrt(5) * r + 5 * r**2 / 3) * torch.exp(-math.sqrt(5) * r)


@pytest.fixture
def kernel() -> InstructionCoupledKernel:
    g = torch.Generator().manual_seed(0)
    Z = torch.rand(5, 3, generator=g, dtype=torch.float64) * 2 - 1
    S = (torch.rand(5, 4, generator=g, dtype=torch.float64) > 0.5).double()
    k = InstructionCoupledKernel(Z, S, jitter=1e-4).double()
    # Distinct, non-default length scales so a swapped kernel or transposed product would show.
    k.latent_kernel.lengthscale = torch.tensor([[0.3, 0.7, 1.1]], dtype=torch.float64)
    k.instruction_kernel.lengthscale = torch.tensor([[0.5, 0.9, 1.3, 0.4]], dtype=torch.float64)
    return k


def test_kernel_matches_hand_computed_formula(kernel: InstructionCoupledKernel) -> None:
    Z, S = kernel.latent_train, kernel.instruction_train
    ls_l = kernel.latent_kernel.lengthscale.detach()
    ls_i = kernel.instruction_kernel.lengthscale.detach()
    x1 = torch.tensor([[0.1, -0.2, 0.3], [0.9, 0.9, -0.9]], dtype=torch.float64)
    x2 = torch.tensor([[-0.5, 0.0, 0.5], [0.2, 0.2, 0.2], [1.0, -1.0, 0.0]], dtype=torch.float64)
    inv = torch.linalg.inv(matern52(Z, Z, ls_l) + 1e-4 * torch.eye(5, dtype=torch.float64))
    hand = matern52(x1, Z, ls_l) @ inv @ matern52(S, S, ls_i) @ inv @ matern52(Z, x2, ls_l)
    with torch.no_grad():
        got = kernel(x1, x2).to_dense()
        diag = kernel(x1, x1, diag=True)
    assert got.shape == (2, 3)
    torch.testing.assert_close(got, hand, rtol=1e-8, atol=1e-10)
    hand_diag = torch.diagonal(
        matern52(x1, Z, ls_l) @ inv @ matern52(S, S, ls_i) @ inv @ matern52(Z, x1, ls_l)
    )
    torch.testing.assert_close(diag, hand_diag, rtol=1e-8, atol=1e-10)


def test_kernel_on_training_points_is_the_instruction_kernel(kernel: InstructionCoupledKernel) -> None:
    """k_L(Z, Z) (K_L + εI)^{-1} ≈ I, so on the evaluated points the GP sees instruction similarity."""
    Z, S = kernel.latent_train, kernel.instruction_train
    with torch.no_grad():
        got = kernel(Z, Z).to_dense()
    k_i = matern52(S, S, kernel.instruction_kernel.lengthscale.detach())
    torch.testing.assert_close(got, k_i, atol=5e-3, rtol=0)
    # Two points whose instructions scored alike are more similar than their z's alone say.
    assert torch.allclose(got, got.T)


def test_standardise_and_propose_stay_in_the_box() -> None:
    g = torch.Generator().manual_seed(1)
    X = torch.rand(6, 4, generator=g) * 2 - 1
    S = (torch.rand(6, 3, generator=g) > 0.5).double()
    y = S.mean(-1)
    z = standardise(y)
    assert abs(float(z.mean())) < 1e-9 and abs(float(z.std()) - 1) < 1e-6
    for coupled in (True, False):
        new = propose(X, y, S, coupled, n_points=3, n_starts=2, sigma0=0.8, popsize=8, max_generations=2,
                      jitter=1e-4, seed=0)  # fmt: skip
        assert new.shape == (3, 4)
        assert float(new.abs().max()) <= 1.0


def test_proposal_climbs_toward_the_optimum_of_a_smooth_objective() -> None:
    """EI maximised by CMA-ES on a 1-D quadratic peaking at x = 0.5, sampled around it: the proposed
    point beats every sampled point's EI and lies between the best samples, near the peak."""
    from botorch.acquisition.analytic import ExpectedImprovement

    from methods.instructzero.bo import fit_gp

    X = torch.tensor([[-0.9], [-0.5], [-0.1], [0.2], [0.8]], dtype=torch.float64)
    y = -((X[:, 0] - 0.5) ** 2)
    new = propose(X, y, None, False, n_points=1, n_starts=2, sigma0=0.3, popsize=16, max_generations=20,
                  jitter=1e-4, seed=0)  # fmt: skip
    assert abs(float(new[0, 0]) - 0.5) < 0.3
    gp, y_std = fit_gp(X, y, None, False, 1e-4)
    ei = ExpectedImprovement(gp, best_f=y_std.max().item())
    with torch.no_grad():
        at_samples = ei(X.unsqueeze(1)).max()
        at_new = ei(new.double().unsqueeze(1))
    assert float(at_new) > float(at_samples)
