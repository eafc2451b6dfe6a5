"""The attention prior (paper eqs. 29–31).

π_ij: a softmax over j of the layer-averaged inner products of learned encodings E_l(u_i,l), E_l(u_j,l) of
the devices' normalised cumulative updates u_i,l = (θ_i,l − θ_l^0)/‖θ_i,l − θ_l^0‖. The encoders are
trained so that π predicts ŵ_i = softmax_j(−L_ij / scale), minimising Σ_j ŵ_ij (−log π_ij); the mixing
weights are w_i ∝ ŵ_i ⊙ π_i.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class UpdateEncoder(nn.Module):
    """One linear encoder E_l per parameter tensor of the device model."""

    def __init__(self, sizes: dict[str, int], dim: int) -> None:
        super().__init__()
        self.names = list(sizes)
        self.enc = nn.ModuleList(nn.Linear(s, dim, bias=False) for s in sizes.values())

    def logits(self, updates: dict[str, torch.Tensor]) -> torch.Tensor:
        """(n, n) layer-averaged inner products of the encoded normalised updates."""
        total = 0
        for name, enc in zip(self.names, self.enc, strict=True):
            u = updates[name].flatten(1)
            e = enc(F.normalize(u, dim=1))
            total = total + e @ e.T
        return total / len(self.enc)


def loss_weights(cross_loss: torch.Tensor, scale: float) -> torch.Tensor:
    """ŵ_i = softmax_j(−L_ij / scale) (eq. 29)."""
    return torch.softmax(-cross_loss / scale, dim=1)


def attention_mixing(
    encoder: UpdateEncoder,
    opt: torch.optim.Optimizer,
    updates: dict[str, torch.Tensor],
    cross_loss: torch.Tensor,
    scale: float,
    steps: int,
) -> tuple[torch.Tensor, float]:
    """Train the encoders for `steps` Adam steps on Σ_j ŵ_ij(−log π_ij) (eq. 31), then w ∝ ŵ ⊙ π (eq. 30)."""
    target = loss_weights(cross_loss, scale)
    updates = {k: v.detach() for k, v in updates.items()}
    loss = torch.zeros(())
    for _ in range(steps):
        log_pi = torch.log_softmax(encoder.logits(updates), dim=1)
        loss = -(target * log_pi).sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        w = target * torch.softmax(encoder.logits(updates), dim=1)
    return w / w.sum(1, keepdim=True), float(loss.detach())
