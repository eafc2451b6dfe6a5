"""Subclasses of SBCL (arXiv 2306.15925, §3.1 "Subclass partition"): how many per class, k-means within each
class on the embeddings, global subclass ids, and the class temperatures of the class term (§3.3).

The official code (SimCLR/main.py, kmeans_gpu.py) leaves k-means unseeded and embeds an augmented view;
here k-means is seeded and the clean training images are embedded (shared/methods/sbcl.md, pitfalls).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F


def subclass_counts(class_counts: Sequence[int], delta: int) -> list[int]:
    """K_c = max(1, ⌊n_c / M⌋) with floor size M = max(min_c n_c, δ): head classes split into subclasses of
    about the tail classes' size; a class smaller than 2M stays one subclass."""
    floor_size = max(min(class_counts), delta)
    return [max(1, n // floor_size) for n in class_counts]


def kmeans_cosine(
    x: torch.Tensor, k: int, iters: int = 35, generator: torch.Generator | None = None, tol: float = 1e-3
) -> torch.Tensor:
    """Cluster ids (N,) of spherical k-means: assign by cosine similarity, centres are member means.

    Initial centres are k distinct random points; a centre that loses all its members is reseeded at a
    random point (as the official kmeans_gpu.py does). At most ``iters`` iterations (35 in the paper's code),
    earlier when the squared total centre shift falls below ``tol``.
    """
    n = x.shape[0]
    if k <= 1:
        return torch.zeros(n, dtype=torch.long, device=x.device)
    if n <= k:
        return torch.arange(n, device=x.device)
    g = generator or torch.Generator().manual_seed(0)
    xn = F.normalize(x.float(), dim=1)
    centres = xn[torch.randperm(n, generator=g)[:k].to(x.device)].clone()
    ids = torch.zeros(n, dtype=torch.long, device=x.device)
    for _ in range(iters):
        ids = (xn @ F.normalize(centres, dim=1).T).argmax(dim=1)
        sums = torch.zeros_like(centres).index_add_(0, ids, xn)
        sizes = torch.bincount(ids, minlength=k)
        new = sums / sizes.clamp(min=1)[:, None].to(sums.dtype)
        empty = sizes == 0
        if empty.any():
            new[empty] = xn[torch.randint(n, (int(empty.sum()),), generator=g).to(x.device)]
        shift = (new - centres).norm(dim=1).sum() ** 2
        centres = new
        if shift < tol:
            break
    return (xn @ F.normalize(centres, dim=1).T).argmax(dim=1)


def assign_subclasses(
    z: torch.Tensor, labels: torch.Tensor, k_per_class: Sequence[int], seed: int, iters: int = 35
) -> torch.Tensor:
    """Global subclass id s_i = offset_c + cluster_i, offset_c = Σ_{c' < c} K_{c'} (no sorting by class)."""
    offsets = np.concatenate([[0], np.cumsum(k_per_class)[:-1]])
    sub = torch.empty_like(labels)
    g = torch.Generator().manual_seed(seed)
    for c, k in enumerate(k_per_class):
        members = torch.nonzero(labels == c).flatten()
        if len(members) == 0:
            continue
        ids = kmeans_cosine(z[members], k, iters, g) if k > 1 else torch.zeros(len(members), dtype=torch.long)
        sub[members] = int(offsets[c]) + ids.to(labels.device)
    return sub


def class_temperatures(
    z: torch.Tensor, labels: torch.Tensor, k_per_class: Sequence[int], tau: float
) -> torch.Tensor:
    """τ_c = τ · d_c / mean(d), d_c = mean_i ‖z_i − μ_c‖₂ / log(n_c + 10) clipped to its 20th–80th percentile;
    classes with K_c = 1 keep τ (official SimCLR/main.py, the `Rank` rule)."""
    num_classes = len(k_per_class)
    d = np.zeros(num_classes)
    for c in range(num_classes):
        zc = z[labels == c].float()
        if len(zc):
            d[c] = float((zc - zc.mean(dim=0)).norm(dim=1).mean()) / np.log(len(zc) + 10)
    d = d.clip(np.percentile(d, 20), np.percentile(d, 80))
    temps = tau * d / d.mean() if d.mean() > 0 else np.full(num_classes, tau)
    temps[np.asarray(k_per_class) == 1] = tau
    return torch.tensor(temps, dtype=torch.float32)
