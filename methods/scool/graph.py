"""Fixed graphs, sparsification and how well a cooperation graph matches the true groups."""

from __future__ import annotations

import math

import torch


def dpsgd_graph(n: int, neighbours: int, gen: torch.Generator) -> torch.Tensor:
    """D-PSGD's fixed graph (the Dirac-delta prior): each device averages uniformly over itself and
    `neighbours` random other devices (symmetrised, so degrees can differ a little)."""
    adj = torch.eye(n)
    for i in range(n):
        others = torch.randperm(n - 1, generator=gen)[:neighbours]
        others = others + (others >= i).long()  # skip i itself
        adj[i, others] = 1.0
    adj = ((adj + adj.T) > 0).float()
    return adj / adj.sum(1, keepdim=True)


def sparsify_mask(w: torch.Tensor, keep: float) -> torch.Tensor:
    """Keep device i itself and its top ⌈keep·(n−1)⌉ neighbours by w_ij."""
    n = len(w)
    k = max(1, math.ceil(keep * (n - 1)))
    off = w.clone().fill_diagonal_(-float("inf"))
    mask = torch.zeros_like(w).scatter_(1, off.topk(k, dim=1).indices, 1.0)
    return mask.fill_diagonal_(1.0)


def apply_mask(w: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return w
    w = w * mask
    return w / w.sum(1, keepdim=True)


def in_group_share(w: torch.Tensor, group: torch.Tensor) -> float:
    """Mean over devices of the share of neighbour weight (j ≠ i) that lands on the device's true group."""
    same = (group[:, None] == group[None, :]).float().fill_diagonal_(0.0)
    off = w.clone().fill_diagonal_(0.0)
    total = off.sum(1)
    ok = total > 0
    return float(((off * same).sum(1)[ok] / total[ok]).mean()) if ok.any() else float("nan")
