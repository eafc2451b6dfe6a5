"""The SBM prior's variational E-step (paper eqs. 18–20).

Edges W_ij ~ Bernoulli(B_{z_i z_j}) with block memberships z_i ~ Cat(π), π ~ Dir(α); the observation is
Y_ij = −L(θ_i; D_j), how well model i fits device j's data. Mean-field: φ_i = q(z_i), γ = q(π) parameters.
"""

from __future__ import annotations

import torch


def block_matrix(k: int, b_in: float, b_out: float) -> torch.Tensor:
    return torch.full((k, k), b_out).fill_diagonal_(b_in)


def random_memberships(n: int, k: int, gen: torch.Generator) -> torch.Tensor:
    """φ_i ~ Dirichlet(1, ..., 1), drawn as normalised Exp(1) variables from `gen`."""
    e = -torch.rand(n, k, generator=gen).clamp_min(1e-12).log()
    return e / e.sum(1, keepdim=True)


def sbm_estep(
    y: torch.Tensor, phi: torch.Tensor, b: torch.Tensor, alpha: float, scale: float, iters: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Alternate the edge posterior W and the memberships φ; returns (W (n, n) with a zero diagonal, φ)."""
    n = y.shape[0]
    off = 1.0 - torch.eye(n, dtype=y.dtype, device=y.device)
    log_b, log_1mb = b.log(), (1 - b).log()
    logit_b = log_b - log_1mb
    w = torch.zeros_like(y)
    for _ in range(iters):
        # eq. (18): W_ij = σ((Σ_{g,h} φ_ig φ_jh log(B_gh / (1 − B_gh)) + Y_ij) / scale), j ≠ i
        w = torch.sigmoid((phi @ logit_b @ phi.T + y) / scale) * off
        # eq. (19): Σ_{j≠i} Σ_h φ_jh [W_ij log B_kh + W_ji log B_hk
        #                             + (1−W_ij) log(1−B_kh) + (1−W_ji) log(1−B_hk)]
        s = (
            (w @ phi) @ log_b.T
            + (w.T @ phi) @ log_b
            + ((off - w) @ phi) @ log_1mb.T
            + ((off - w.T) @ phi) @ log_1mb
        )
        # eq. (20): + ψ(γ_ik) − ψ(Σ_k γ_ik), γ_ik = α_k + φ_ik
        gamma = alpha + phi
        phi = torch.softmax(s + torch.digamma(gamma) - torch.digamma(gamma.sum(1, keepdim=True)), dim=1)
    return w, phi


def self_edges(y: torch.Tensor, phi: torch.Tensor, b: torch.Tensor, scale: float) -> torch.Tensor:
    """The official code's W_ii (SBM.py, optimize_W for i = j): σ((φ_i logit(B) φ_i + Y_ii) / scale)."""
    logit_b = b.log() - (1 - b).log()
    return torch.sigmoid((((phi @ logit_b) * phi).sum(1) + y.diagonal()) / scale)


def sbm_mixing(w: torch.Tensor, self_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mixing weights w_i = W_i / Σ_j W_ij, with the device's own update at weight 1 (the ∇L(D_i) term of
    the M-step, eq. 22, which has no W factor), or at ``self_weight`` (n,) (the official W_ii)."""
    own = torch.ones(len(w), dtype=w.dtype, device=w.device) if self_weight is None else self_weight
    w = w + torch.diag(own)
    return w / w.sum(1, keepdim=True)
