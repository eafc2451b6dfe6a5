"""Query strategies: which `k` pool points to label next.

Every strategy gets the current model's class probabilities and last-layer inputs (embeddings) of the pool
and the labelled set, and returns positions in the pool. Distances are never formed for all pairs at once:
k-centre and k-means++ keep one running minimum distance per pool point (O(N·k) time, O(N) memory).
"""

from __future__ import annotations

import numpy as np
import torch


def _top(scores: torch.Tensor, k: int) -> np.ndarray:
    return torch.topk(scores, k).indices.cpu().numpy()


def entropy(probs: torch.Tensor, k: int) -> np.ndarray:
    return _top(-(probs * probs.clamp_min(1e-12).log()).sum(-1), k)


def margin(probs: torch.Tensor, k: int) -> np.ndarray:
    """Smallest gap between the two most probable classes."""
    top2 = probs.topk(2, dim=-1).values
    return _top(-(top2[:, 0] - top2[:, 1]), k)


def largest_margin(probs: torch.Tensor, k: int) -> np.ndarray:
    """ColdStartAL's largest_margin (strategies.py): the smallest gap between the most and the least
    probable class, p_max − p_min."""
    return _top(-(probs.max(dim=-1).values - probs.min(dim=-1).values), k)


def least_confidence(probs: torch.Tensor, k: int) -> np.ndarray:
    return _top(-probs.max(dim=-1).values, k)


def coreset(pool_emb: torch.Tensor, labelled_emb: torch.Tensor, k: int, chunk: int = 4096) -> np.ndarray:
    """Greedy k-centre (Sener & Savarese 2018): repeatedly take the pool point farthest from every centre.

    Squared distances as ‖x‖² + ‖c‖² − 2⟨x, c⟩: one matrix product per chunk for the labelled centres,
    one matrix-vector product per new centre.
    """
    sq = (pool_emb * pool_emb).sum(-1)
    if len(labelled_emb):
        lab_sq = (labelled_emb * labelled_emb).sum(-1)
        parts = []
        for start in range(0, len(pool_emb), chunk):
            p = pool_emb[start : start + chunk]
            d = sq[start : start + chunk, None] + lab_sq[None, :] - 2 * p @ labelled_emb.T
            parts.append(d.min(dim=1).values)
        min_d = torch.cat(parts).clamp_min(0)
    else:
        min_d = torch.full((len(pool_emb),), float("inf"), device=pool_emb.device)
    chosen = []
    for _ in range(k):
        i = int(torch.argmax(min_d))
        chosen.append(i)
        min_d = torch.minimum(min_d, (sq + sq[i] - 2 * (pool_emb @ pool_emb[i])).clamp_min(0))
        min_d[i] = -1.0
    return np.array(chosen)


def badge(probs: torch.Tensor, pool_emb: torch.Tensor, k: int, gen: torch.Generator) -> np.ndarray:
    """BADGE (Ash et al. 2020): k-means++ seeding on the gradient embeddings g_i = (p_i − e_ŷi) ⊗ h_i.

    The K·d-dimensional g_i are never materialised: ⟨g_i, g_j⟩ = ⟨p_i − e_ŷi, p_j − e_ŷj⟩ · ⟨h_i, h_j⟩, so a
    squared distance needs only the two factors.
    """
    r = probs.clone()
    r[torch.arange(len(r)), probs.argmax(-1)] -= 1.0  # p − onehot(ŷ): the last-layer gradient's factor
    sq_norm = (r * r).sum(-1) * (pool_emb * pool_emb).sum(-1)

    def sq_dist(i: int) -> torch.Tensor:
        return (sq_norm + sq_norm[i] - 2 * (r @ r[i]) * (pool_emb @ pool_emb[i])).clamp_min(0)

    first = int(torch.argmax(sq_norm))  # BADGE starts from the largest gradient
    chosen, min_d = [first], sq_dist(first)
    for _ in range(k - 1):
        weights = min_d.clone()
        weights[chosen] = 0
        if float(weights.sum()) <= 0:  # every point coincides with a centre: fall back to random
            weights = torch.ones_like(min_d)
            weights[chosen] = 0
        i = int(torch.multinomial(weights.double().cpu(), 1, generator=gen))  # gen lives on the CPU
        chosen.append(i)
        min_d = torch.minimum(min_d, sq_dist(i))
    return np.array(chosen)


def typiclust(
    pool_emb: torch.Tensor, labelled_emb: torch.Tensor, k: int, seed: int, knn: int = 20, max_iter: int = 50
) -> np.ndarray:
    """TypiClust (Hacohen et al. 2022): k-means into |L| + k clusters; from the largest clusters with the
    fewest labels, take the most typical point (inverse mean distance to its `knn` nearest neighbours)."""
    from sklearn.cluster import KMeans

    all_emb = torch.cat([pool_emb, labelled_emb]).cpu().numpy()
    n_clusters = min(len(labelled_emb) + k, len(all_emb))
    km = KMeans(n_clusters, n_init=1, max_iter=max_iter, random_state=seed).fit(all_emb)
    assign = km.labels_
    pool_assign, lab_assign = assign[: len(pool_emb)], assign[len(pool_emb) :]
    covered = np.bincount(lab_assign, minlength=n_clusters)
    size = np.bincount(pool_assign, minlength=n_clusters)
    chosen: list[int] = []
    for _ in range(k):
        # fewest labels first, then the largest cluster (among those that still have pool points)
        order = np.lexsort((-size, covered))
        c = next((c for c in order if size[c] > 0), None)
        if c is None:
            break
        members = np.flatnonzero((pool_assign == c) & ~np.isin(np.arange(len(pool_emb)), chosen))
        emb = pool_emb[torch.as_tensor(members)]
        d = torch.cdist(emb, emb)
        nn = min(knn, len(members) - 1)
        typicality = (
            1.0 / (d.topk(nn + 1, largest=False).values[:, 1:].mean(-1) + 1e-8) if nn else torch.ones(1)
        )
        chosen.append(int(members[int(torch.argmax(typicality))]))
        covered[c] += 1
        size[c] -= 1
    return np.array(chosen)


def select(
    strategy: str,
    k: int,
    probs: torch.Tensor,
    pool_emb: torch.Tensor,
    labelled_emb: torch.Tensor,
    gen: torch.Generator,
    seed: int,
) -> np.ndarray:
    """Positions (into the pool) of the next `k` points to label."""
    k = min(k, len(probs))
    if strategy == "random":
        return torch.randperm(len(probs), generator=gen)[:k].numpy()
    if strategy == "entropy":
        return entropy(probs, k)
    if strategy == "margin":
        return margin(probs, k)
    if strategy == "largest_margin":
        return largest_margin(probs, k)
    if strategy == "least_confidence":
        return least_confidence(probs, k)
    if strategy == "coreset":
        return coreset(pool_emb, labelled_emb, k)
    if strategy == "badge":
        return badge(probs, pool_emb, k, gen)
    if strategy == "typiclust":
        return typiclust(pool_emb, labelled_emb, k, seed)
    raise ValueError(f"strategy={strategy!r} is not valid")
