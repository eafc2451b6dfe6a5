"""The eigensubspace regulariser of ERC (arXiv 2306.16750, critic loss of Sec. 4)."""

from __future__ import annotations

from torch import Tensor


def eigensubspace_penalty(sq_td_error: Tensor, beta: float, clip: float) -> Tensor:
    """Σ_j mean_i clip(β (e_ij − ē_j)², 0, clip), with ē_j = mean_i e_ij detached.

    ``sq_td_error`` holds e_ij = (Q_j(s_i, a_i) − y_i)² with critics on the leading dimension and samples
    on the last. Pulling every e_ij toward the mean pushes the error vector toward the all-ones
    eigenvector of P^π, the direction along which TD error decays slowest. Inside the clip the gradient
    per sample is 2β(e_i − ē)∇e_i / N; once β(e_i − ē)² reaches ``clip`` the sample gets none.
    """
    mean = sq_td_error.mean(dim=-1, keepdim=True).detach()
    return (beta * (sq_td_error - mean).pow(2)).clamp(0.0, clip).mean(dim=-1).sum()
