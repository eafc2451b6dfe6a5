"""The long-tailed CIFAR subset exactly as the official SBCL / LDAM code draws it (JackHck/SBCL
``SimCLR/unbalance.py``, class ``IMBALANCECIFAR10``), so every seed and every method trains on one fixed set.

Per class c (in label order) keep n_c = int(n_max · (1/ratio)^(c/(C−1))) images, n_max = N / C; the
images are the first n_c of the class's indices after ``np.random.shuffle``, with numpy's global generator
seeded once by ``rand_number`` (0 in the official code) and shuffled class after class. A legacy
``RandomState(rand_number)`` gives the same stream, so on the hub's CIFAR (the same image order as the
original python batches) this is the official subset, not a draw like it.
"""

from __future__ import annotations

import numpy as np


def imbalance_cifar_counts(num_images: int, num_classes: int, imbalance_ratio: float) -> list[int]:
    """``get_img_num_per_cls`` with ``imb_type='exp'`` and ``imb_factor = 1 / imbalance_ratio``."""
    if imbalance_ratio < 1:
        raise ValueError(f"imbalance_ratio={imbalance_ratio} must be >= 1 (n_max / n_min)")
    img_max = num_images / num_classes
    factor = 1.0 / imbalance_ratio
    if num_classes == 1:
        return [int(img_max)]
    return [int(img_max * factor ** (c / (num_classes - 1.0))) for c in range(num_classes)]


def imbalance_cifar_indices(labels: np.ndarray, imbalance_ratio: float, rand_number: int = 0) -> np.ndarray:
    """Indices of the official long-tailed subset, grouped by class in label order (as the official
    ``gen_imbalanced_data`` stacks them); within a class, in the shuffled order it keeps."""
    labels = np.asarray(labels, dtype=np.int64)
    classes = np.unique(labels)
    counts = imbalance_cifar_counts(len(labels), len(classes), imbalance_ratio)
    rng = np.random.RandomState(rand_number)  # = np.random.seed(rand_number) then np.random.shuffle
    keep = []
    for c, n in zip(classes, counts, strict=True):
        idx = np.where(labels == c)[0]
        if n > len(idx):
            raise ValueError(f"class {c} has {len(idx)} images, fewer than the {n} the profile keeps")
        rng.shuffle(idx)
        keep.append(idx[:n])
    return np.concatenate(keep)
