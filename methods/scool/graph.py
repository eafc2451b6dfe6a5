"""Fixed graphs, sparsification and how well a cooperation graph matches the true groups."""

from __future__ import annotations

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
    """Keep int(keep·n) devices, device i itself and its top neighbours by w_ij (the official
    training_utils.py, select_top_faction_mixing_weight_mask: `int(child_rank_num * mask_fraction)`
    by weight; here the device itself always stays, the M-step's own term)."""
    n = len(w)
    k = max(0, int(keep * n + 1e-9) - 1)
    off = w.clone().fill_diagonal_(-float("inf"))
    mask = torch.zeros_like(w).scatter_(1, off.topk(k, dim=1).indices, 1.0) if k else torch.zeros_like(w)
    return mask.fill_diagonal_(1.0)


def fedavg_weights(n: int, fraction: float, gen: torch.Generator) -> torch.Tensor:
    """FedAvg's round: every device takes the mean of max(1, round(fraction·n)) sampled devices' models."""
    picked = torch.randperm(n, generator=gen)[: max(1, round(fraction * n))]
    w = torch.zeros(n, n)
    w[:, picked] = 1.0 / len(picked)
    return w


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
