"""Head / medium / tail class groups for long-tailed reporting, and accuracies per group.

The CIFAR/ImageNet-LT convention splits classes by training count: many-shot (> 100), medium (20–100),
few-shot (< 20). On the small offline sets (≈ 10–130 images per class) those thresholds put nearly every
class in one group, so the default rule here is *tertiles*: classes ranked by training count, the top
third head, the bottom third tail, ties broken by class id; when C is not a multiple of 3 the head takes
the extra classes (C = 10: 4 / 3 / 3). ``rule="thresholds"`` gives the paper convention.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

GROUPS = ("head", "medium", "tail")
RULES = ("tertiles", "thresholds")


def frequency_groups(
    counts: Sequence[int], rule: str = "tertiles", many: int = 100, few: int = 20
) -> np.ndarray:
    """Group id per class: 0 head, 1 medium, 2 tail."""
    counts = np.asarray(counts)
    if rule == "thresholds":
        return np.where(counts > many, 0, np.where(counts >= few, 1, 2))
    if rule != "tertiles":
        raise ValueError(f"split rule={rule!r} is not valid; choose one of: {', '.join(RULES)}")
    order = np.lexsort((np.arange(len(counts)), -counts))  # by count descending, then class id
    n = len(counts)
    n_tail = n // 3
    n_medium = n // 3
    groups = np.empty(n, dtype=int)
    groups[order[: n - n_medium - n_tail]] = 0
    groups[order[n - n_medium - n_tail : n - n_tail]] = 1
    groups[order[n - n_tail :]] = 2
    return groups


def group_accuracies(
    pred: np.ndarray, labels: np.ndarray, groups: np.ndarray, num_classes: int
) -> dict[str, float]:
    """Overall accuracy, balanced accuracy (mean per-class recall) and the mean recall of each group.

    A group without classes (possible with ``thresholds``) gives NaN rather than a misleading 0.
    """
    pred, labels = np.asarray(pred), np.asarray(labels)
    recall = np.full(num_classes, np.nan)
    for c in range(num_classes):
        mask = labels == c
        if mask.any():
            recall[c] = float((pred[mask] == c).mean())
    out = {"acc": float((pred == labels).mean()), "balanced_acc": float(np.nanmean(recall))}
    for g, name in enumerate(GROUPS):
        member = (np.asarray(groups) == g) & ~np.isnan(recall)
        out[f"{name}_acc"] = float(recall[member].mean()) if member.any() else float("nan")
    return out
