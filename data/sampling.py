"""Index samplers shared by several methods: long-tailed subsets and few-shot label subsets.

Everything here works on integer label arrays and returns sorted index arrays, so the same code serves
images (SBCL, diffusion probes, CHAIN, SCooL) and text (MerA's K-shot target tasks).
"""

from __future__ import annotations

import numpy as np


def long_tailed_counts(n_max: int, num_classes: int, imbalance_ratio: float) -> list[int]:
    """Exponential profile of the LT benchmarks (Cui et al. 2019): n_c = n_max · ratio^(−c/(C−1))."""
    if imbalance_ratio < 1:
        raise ValueError(f"imbalance_ratio={imbalance_ratio} must be >= 1 (n_max / n_min)")
    if num_classes == 1:
        return [n_max]
    return [max(1, int(n_max * imbalance_ratio ** (-c / (num_classes - 1)))) for c in range(num_classes)]


def long_tailed_indices(labels: np.ndarray, imbalance_ratio: float, seed: int) -> np.ndarray:
    """A long-tailed subset: class c (in label order) keeps the exponential profile's count of samples.

    n_max is the smallest class size of the balanced source, so every class can supply its count.
    """
    labels = np.asarray(labels)
    classes = np.unique(labels)
    n_max = int(min((labels == c).sum() for c in classes))
    counts = long_tailed_counts(n_max, len(classes), imbalance_ratio)
    rng = np.random.default_rng(seed)
    pools = [np.flatnonzero(labels == c) for c in classes]
    keep = [rng.choice(pool, n, replace=False) for pool, n in zip(pools, counts, strict=True)]
    return np.sort(np.concatenate(keep))


def few_shot_indices(labels: np.ndarray, shots: int, seed: int) -> np.ndarray:
    """``shots`` examples of every class (a ValueError names the class that has fewer)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(labels):
        pool = np.flatnonzero(labels == c)
        if len(pool) < shots:
            raise ValueError(f"class {c} has {len(pool)} examples, fewer than shots={shots}")
        keep.append(rng.choice(pool, shots, replace=False))
    return np.sort(np.concatenate(keep))


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded train/test split keeping every class's share (for sets without an official split)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        pool = rng.permutation(np.flatnonzero(labels == c))
        n_test = max(1, round(len(pool) * test_fraction))
        test.append(pool[:n_test])
        train.append(pool[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))
