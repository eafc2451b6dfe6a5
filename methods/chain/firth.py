"""Firth bias reduction for softmax classifiers (Ghaffari et al., ICLR 2022), as CHAIN uses it.

L = (1/N) Σ_i [ CE(p_i, y_i) + λ · (−(1/K) Σ_k log p_ik) ]

The penalty is KL(U‖p_i) + log K: it pulls every prediction toward the uniform distribution, which is the
first-order correction of the O(1/N) bias of the maximum-likelihood estimate. The average over classes is
taken once (ColdStartAL divides by K a second time, so its λ grid is in other units: not copied).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def firth_penalty(logits: torch.Tensor) -> torch.Tensor:
    """(1/N) Σ_i −(1/K) Σ_k log p_ik."""
    return -F.log_softmax(logits, dim=-1).mean()


def firth_loss(logits: torch.Tensor, labels: torch.Tensor, lam: float | torch.Tensor) -> torch.Tensor:
    """Cross-entropy plus λ times the Firth penalty, both averaged over the N samples."""
    logp = F.log_softmax(logits, dim=-1)
    ce = -logp.gather(1, labels[:, None]).mean()
    return ce + lam * (-logp.mean())
