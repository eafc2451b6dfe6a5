"""Image sets decoded per item: ImageNet-1k (1.28M images) and the FGVC transfer sets, whose images differ
in size and would not fit in memory as one float tensor.

Each image is resized and centre-cropped to ``size`` × ``size`` as guided-diffusion's ``center_crop_arr``
does (guided_diffusion/image_datasets.py, the official evaluation transform): halve with a box filter while
the short side is at least twice ``size``, resize the short side to ``size`` (bicubic), crop the centre. The
official training transform (``random_crop_arr``) is the probe's own batch augmentation
(methods/diffusion_cls/protocol.py ``crop_flip``) applied to that centre square.

Sources: the hub through ``datasets.load_dataset`` (a hub id or a local folder in the hub repo's layout; one
call for both) or torchvision's dataset classes (``data.source=torchvision``, downloaded into ``data.root``).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

# torchvision's classes for the sets it can load, and their (train, test) splits: Aircraft's trainval is
# its train + val; Flowers102's train and val are 10 images a class each, both used for training.
TORCHVISION_SETS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "aircraft": ("FGVCAircraft", ("trainval",), "test"),
    "cars": ("StanfordCars", ("train",), "test"),
    "flowers102": ("Flowers102", ("train", "val"), "test"),
}


def center_crop(image: Any, size: int) -> np.ndarray:
    """A PIL image → (3, size, size) float32 in [0, 1], as guided-diffusion's ``center_crop_arr``."""
    from PIL import Image

    image = image.convert("RGB")
    while min(image.size) >= 2 * size:
        image = image.resize(tuple(s // 2 for s in image.size), resample=Image.BOX)
    scale = size / min(image.size)
    image = image.resize(tuple(round(s * scale) for s in image.size), resample=Image.BICUBIC)
    arr = np.asarray(image)
    top, left = (arr.shape[0] - size) // 2, (arr.shape[1] - size) // 2
    return arr[top : top + size, left : left + size].transpose(2, 0, 1).astype(np.float32) / 255.0


class LazyImages(Dataset):
    """(image (3, size, size) in [0, 1], label, index) per item, decoded when asked for. ``source[i]`` gives
    the i-th PIL image; ``labels`` are read up front (the probe's few-shot and validation cuts need them)."""

    def __init__(
        self, source: Any, labels: np.ndarray, num_classes: int, size: int, rows: np.ndarray | None = None
    ) -> None:
        self.source, self.size, self.num_classes = source, size, num_classes
        self.rows = np.arange(len(labels)) if rows is None else np.asarray(rows)
        self._all_labels = np.asarray(labels, dtype=np.int64)
        self.labels = torch.as_tensor(self._all_labels[self.rows])

    def __len__(self) -> int:
        return len(self.rows)

    def image(self, i: int) -> torch.Tensor:
        return torch.from_numpy(center_crop(self.source[int(self.rows[i])], self.size))

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        return self.image(i), self.labels[i], i

    def subset(self, indices: np.ndarray | torch.Tensor) -> LazyImages:
        rows = self.rows[np.asarray(indices, dtype=np.int64)]
        return LazyImages(self.source, self._all_labels, self.num_classes, self.size, rows)

    def stack(self, indices: range | list[int]) -> torch.Tensor:
        """The images at ``indices`` as one (N, 3, size, size) tensor (a few: e.g. a head's shape probe)."""
        return torch.stack([self.image(i) for i in indices])

    def class_counts(self) -> list[int]:
        return torch.bincount(self.labels, minlength=self.num_classes).tolist()


class HubColumn:
    """``ds[i][column]`` of a ``datasets.Dataset`` (picklable, so DataLoader workers can decode)."""

    def __init__(self, ds: Any, column: str) -> None:
        self.ds, self.column = ds, column

    def __getitem__(self, i: int) -> Any:
        return self.ds[i][self.column]


def load_hub_split(cfg: Any, split: str) -> Any:
    """``datasets.load_dataset(hub_id, hub_config, split=split)``, with the reason in the message when a
    gated set (ImageNet-1k) refuses this account or the hub cannot be reached."""
    from pathlib import Path

    from data.hub import load_dataset_source

    if not cfg.hub_id:
        raise ValueError(
            f"data.source=hub needs data.hub_id (a hub dataset id or a local folder) for {cfg.name}"
        )
    local = Path(cfg.hub_id).expanduser()
    try:
        return load_dataset_source(cfg.hub_id, cfg.hub_config, split=split)
    except Exception as ex:  # DatasetNotFoundError, GatedRepoError, ConnectionError, ... from the hub client
        text = str(ex)
        if local.exists() or not any(
            w in text.lower() for w in ("gated", "authenticat", "401", "403", "connect", "offline")
        ):
            raise
        first = text.splitlines()[0] if text else type(ex).__name__
        raise ValueError(
            f"data.hub_id={cfg.hub_id} could not be loaded from the hub: {first}. "
            "A gated set (ImageNet-1k: ILSVRC/imagenet-1k) needs its terms accepted on its hub page and a "
            "token here (`huggingface-cli login` or HF_TOKEN); offline, give a local folder in the hub's "
            "layout as data.hub_id"
        ) from None


def hub_lazy(cfg: Any, split: str) -> LazyImages:
    """One split of a hub image set, decoded per item at ``cfg.image_size``."""
    from datasets import ClassLabel

    ds = load_hub_split(cfg, split)
    for column in (cfg.image_column, cfg.label_column):
        if column not in ds.column_names:
            raise ValueError(
                f"data.hub_id={cfg.hub_id}: no column {column!r} in its {split} split "
                f"(columns: {', '.join(ds.column_names)}); set data.image_column / data.label_column"
            )
    feature = ds.features[cfg.label_column]
    labels = np.asarray(ds.select_columns([cfg.label_column]).with_format("numpy")[cfg.label_column])
    if (labels < 0).any():
        raise ValueError(
            f"data.hub_id={cfg.hub_id}: split {split!r} has unlabelled images (label -1: ImageNet-1k's test "
            "split); set data.test_split=validation"
        )
    k = feature.num_classes if isinstance(feature, ClassLabel) else int(labels.max()) + 1
    return LazyImages(HubColumn(ds, cfg.image_column), labels, k, int(cfg.image_size))


class _Concat:
    def __init__(self, parts: list[Any]) -> None:
        self.parts, self.offsets = parts, np.cumsum([0] + [len(p) for p in parts])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, i: int) -> Any:
        k = int(np.searchsorted(self.offsets, i, side="right")) - 1
        return self.parts[k][i - int(self.offsets[k])][0]


def _torchvision_labels(ds: Any) -> list[int]:
    # the classes keep their labels beside the file paths; reading them decodes no image
    if hasattr(ds, "_labels"):
        return list(ds._labels)
    return [label for _, label in ds._samples]


def torchvision_lazy(cfg: Any, root: str, train: bool) -> LazyImages:
    """A torchvision FGVC set (aircraft, cars, flowers102), decoded per item at ``cfg.image_size``."""
    if cfg.name not in TORCHVISION_SETS:
        raise ValueError(
            f"data.source=torchvision: torchvision has no {cfg.name}; choices: {', '.join(TORCHVISION_SETS)} "
            "(ImageNet-1k: data.source=hub)"
        )
    import torchvision

    cls_name, train_splits, test_split = TORCHVISION_SETS[cfg.name]
    cls = getattr(torchvision.datasets, cls_name)
    root = os.path.expanduser(root)
    parts = [cls(root, split=s, download=True) for s in (train_splits if train else (test_split,))]
    labels = np.concatenate([np.asarray(_torchvision_labels(p), dtype=np.int64) for p in parts])
    return LazyImages(_Concat(parts), labels, len(parts[0].classes), int(cfg.image_size))
