"""Seed statistics for result tables: mean ± std, interquartile mean, stratified bootstrap CIs.

RL results over a handful of seeds are noisy and heavy-tailed, so beside mean ± std we report the
interquartile mean with a stratified bootstrap interval, as rliable (Agarwal et al., 2021) recommends.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy.stats import trim_mean


def mean_std(x: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Mean and sample std (ddof=1); the std is nan for fewer than two values."""
    x = np.asarray(x, dtype=float)
    std = float(np.std(x, ddof=1)) if x.size > 1 else float("nan")
    return float(np.mean(x)), std


def iqm(x: Sequence[float] | np.ndarray, axis: int = -1) -> float | np.ndarray:
    """Interquartile mean: the mean of the middle 50%, robust to one lucky or crashed seed."""
    return trim_mean(np.asarray(x, dtype=float), 0.25, axis=axis)


def bootstrap_ci(
    values_per_stratum: list[np.ndarray],
    stat: Callable[..., float | np.ndarray] = iqm,
    reps: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[float, float]:
    """Percentile interval of ``stat`` over stratified bootstrap resamples.

    Each stratum (a task, say) is resampled with replacement on its own and the resamples are
    concatenated, so every replicate keeps the strata's sizes and no task can drop out. ``stat`` must
    reduce the last axis (``stat(samples, axis=-1)``), like ``np.mean`` or :func:`iqm`, so all
    replicates are computed at once. The RNG seed is fixed: the same input gives the same interval.
    """
    rng = np.random.default_rng(seed)
    strata = [np.asarray(s, dtype=float) for s in values_per_stratum if len(s)]
    if not strata:
        return float("nan"), float("nan")
    samples = np.concatenate([s[rng.integers(0, len(s), size=(reps, len(s)))] for s in strata], axis=1)
    stats = np.asarray(stat(samples, axis=-1), dtype=float)
    lo, hi = np.percentile(stats, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(lo), float(hi)
