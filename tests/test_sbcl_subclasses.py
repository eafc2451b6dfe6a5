"""Subclass counts, seeded cosine k-means, global subclass ids and class temperatures."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from methods.sbcl.subclasses import assign_subclasses, class_temperatures, kmeans_cosine, subclass_counts


def test_subclass_counts_by_hand() -> None:
    counts = [122, 94, 73, 56, 43, 33, 26, 20, 15, 12]
    assert subclass_counts(counts, delta=10) == [10, 7, 6, 4, 3, 2, 2, 1, 1, 1]  # M = 12
    assert subclass_counts(counts, delta=20) == [6, 4, 3, 2, 2, 1, 1, 1, 1, 1]  # M = 20
    assert subclass_counts([500, 5], delta=10) == [50, 1]


def blobs(k: int = 3, per: int = 30, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    directions = F.normalize(torch.randn(k, 16, generator=g), dim=1)
    truth = torch.arange(k).repeat_interleave(per)
    x = directions[truth] + 0.05 * torch.randn(k * per, 16, generator=g)
    return x, truth


def test_kmeans_recovers_separated_directions_and_is_seeded() -> None:
    x, truth = blobs()
    ids = kmeans_cosine(x, 3, generator=torch.Generator().manual_seed(0))
    # a perfect partition: each true blob maps to exactly one cluster and vice versa
    pairs = {(int(a), int(b)) for a, b in zip(truth, ids, strict=True)}
    assert len(pairs) == 3 and len({b for _, b in pairs}) == 3
    again = kmeans_cosine(x, 3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(ids, again)
    # scale does not matter for cosine k-means
    assert torch.equal(kmeans_cosine(5 * x, 3, generator=torch.Generator().manual_seed(0)), ids)


def test_kmeans_reseeds_empty_clusters_and_handles_tiny_classes() -> None:
    x = torch.tensor([[1.0, 0.0]] * 6 + [[0.0, 1.0]] * 6)  # only two distinct points, four clusters
    ids = kmeans_cosine(x, 4, generator=torch.Generator().manual_seed(0))
    assert ids.min() >= 0 and ids.max() < 4
    assert torch.equal(kmeans_cosine(x[:3], 5), torch.arange(3))  # fewer points than clusters
    assert torch.equal(kmeans_cosine(x, 1), torch.zeros(12, dtype=torch.long))


def test_global_subclass_ids_stay_in_their_class_range() -> None:
    x, _ = blobs(k=4, per=20, seed=1)
    labels = torch.tensor([0] * 50 + [1] * 20 + [2] * 10)
    k = [4, 2, 1]
    sub = assign_subclasses(x, labels, k, seed=0)
    offsets = np.concatenate([[0], np.cumsum(k)])
    for c in range(3):
        s = sub[labels == c]
        assert s.min() >= offsets[c] and s.max() < offsets[c + 1]
    assert set(sub[labels == 0].tolist()) == {0, 1, 2, 3}
    assert torch.equal(sub, assign_subclasses(x, labels, k, seed=0))


def test_class_temperatures_formula_clip_and_single_subclass_classes() -> None:
    # class c has points ±r_c around its centre: mean distance r_c
    radii = [1.0, 2.0, 3.0, 4.0, 5.0]
    counts = [10, 10, 10, 10, 10]
    z, labels = [], []
    for c, r in enumerate(radii):
        pts = torch.zeros(counts[c], 2)
        pts[: counts[c] // 2, 0], pts[counts[c] // 2 :, 0] = r, -r
        z.append(pts + torch.tensor([10.0 * c, 0.0]))
        labels += [c] * counts[c]
    z, labels = torch.cat(z), torch.tensor(labels)
    temps = class_temperatures(z, labels, [2, 2, 2, 2, 1], tau=0.1)
    d = np.array(radii) / np.log(10 + 10)
    d = d.clip(np.percentile(d, 20), np.percentile(d, 80))
    expected = 0.1 * d / d.mean()
    expected[4] = 0.1  # K_c = 1 keeps τ
    assert temps.tolist() == pytest.approx(expected.tolist(), rel=1e-5)
    raw = np.array(radii) / np.log(20)
    assert float(temps[0]) > 0.1 * raw[0] / d.mean() * 1.01  # the 20th-percentile clip lifted class 0
