"""Linear classifiers on frozen features: the second stage of SBCL / SupCon and the few-shot probes.

Losses (``loss``):
- ``ce``: plain cross-entropy.
- ``balanced``: cross-entropy weighted by 1 / n_c (normalised to mean 1) so every class counts equally.
- ``ldam_drw``: LDAM (Cao et al. 2019): a normed linear layer, logits s·cos θ, the true class's logit
  reduced by m_c = max_m · n_c^(−1/4) / max_c n_c^(−1/4); deferred re-weighting (DRW) switches the class
  weights to the effective-number ones, w_c ∝ (1 − β) / (1 − β^{n_c}), at ``drw_epoch``. The official SBCL
  code applies the DRW weights from epoch 0 (shared/methods/sbcl.md, pitfalls); ``drw_epoch=0`` does that.
Training is minibatch SGD (cosine schedule) on a (features, labels) tensor pair; it runs on the features'
device and is seeded.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from data.vision.options import PROBE_LOSSES, ProbeConfig


class NormedLinear(nn.Module):
    """Cosine logits: normalised features times normalised class weights (LDAM's classifier)."""

    def __init__(self, in_dim: int, num_classes: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(
            torch.empty(in_dim, num_classes).uniform_(-1, 1).renorm_(2, 1, 1e-5).mul_(1e5)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1) @ F.normalize(self.weight, dim=0)


def ldam_margins(counts: list[int], max_margin: float) -> torch.Tensor:
    m = 1.0 / np.sqrt(np.sqrt(np.maximum(np.asarray(counts, dtype=float), 1)))
    return torch.tensor(m * (max_margin / m.max()), dtype=torch.float32)


def ldam_loss(
    cos: torch.Tensor, y: torch.Tensor, margins: torch.Tensor, scale: float, weight: torch.Tensor | None
) -> torch.Tensor:
    """Cross-entropy on s · (cos θ − m_y · onehot(y))."""
    logits = cos - F.one_hot(y, cos.shape[1]) * margins[y][:, None]
    return F.cross_entropy(scale * logits, y, weight=weight)


def balanced_weights(counts: list[int]) -> torch.Tensor:
    w = 1.0 / np.maximum(np.asarray(counts, dtype=float), 1)
    return torch.tensor(w / w.mean(), dtype=torch.float32)


def effective_number_weights(counts: list[int], beta: float) -> torch.Tensor:
    """Class-balanced weights (Cui et al. 2019), normalised to sum to the number of classes."""
    eff = 1.0 - np.power(beta, np.asarray(counts, dtype=float))
    w = (1.0 - beta) / np.maximum(eff, 1e-12)
    return torch.tensor(w / w.sum() * len(counts), dtype=torch.float32)


def train_linear_probe(
    feats: torch.Tensor, labels: torch.Tensor, num_classes: int, cfg: ProbeConfig, seed: int
) -> nn.Module:
    """A linear (or, for LDAM, normed-linear) classifier trained on frozen features."""
    if cfg.loss not in PROBE_LOSSES:
        raise ValueError(f"probe loss={cfg.loss!r} is not valid; choose one of: {', '.join(PROBE_LOSSES)}")
    device = feats.device
    g = torch.Generator().manual_seed(seed)
    counts = torch.bincount(labels.cpu(), minlength=num_classes).tolist()
    torch.manual_seed(seed)
    head: nn.Module = NormedLinear(feats.shape[1], num_classes) if cfg.loss == "ldam_drw" else None
    head = (head or nn.Linear(feats.shape[1], num_classes)).to(device)
    opt = torch.optim.SGD(head.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, cfg.epochs))
    margins = ldam_margins(counts, cfg.max_margin).to(device)
    weight = balanced_weights(counts).to(device) if cfg.loss == "balanced" else None
    drw = effective_number_weights(counts, cfg.beta).to(device)
    n = len(labels)
    for epoch in range(cfg.epochs):
        perm = torch.randperm(n, generator=g).to(device)
        for start in range(0, n, cfg.batch_size):
            idx = perm[start : start + cfg.batch_size]
            out = head(feats[idx])
            if cfg.loss == "ldam_drw":
                loss = ldam_loss(
                    out, labels[idx], margins, cfg.scale, drw if epoch >= cfg.drw_epoch else None
                )
            else:
                loss = F.cross_entropy(out, labels[idx], weight=weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
    return head.eval()
