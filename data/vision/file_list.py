"""ImageNet-LT / iNaturalist-2018 style file lists, for online users with the images on disk.

Each line is ``<relative/path.jpg> <label>`` (the format of the official ImageNet_LT_train.txt and
iNaturalist18_train.txt lists, also SBCL's moco/imagenet_lt/*.txt). Images are decoded lazily with PIL,
resized (shorter side) and centre-cropped to ``size`` so a batch stacks; random augmentation then runs
on the batch tensor (data.vision.augment) like for the in-memory sets. Nothing here is used offline; the
parser and the dataset are tested on a generated list of tiny PNGs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from data.vision.options import FileListDataConfig


def read_file_list(path: str | Path) -> tuple[list[str], np.ndarray]:
    """(relative paths, int labels) from ``path label`` lines; blank lines and ``#`` comments skipped."""
    paths, labels = [], []
    for n, line in enumerate(Path(path).expanduser().read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, label = line.rpartition(" ")
        if not name or not label.lstrip("-").isdigit():
            raise ValueError(f"{path}:{n}: expected '<path> <label>', got {line!r}")
        paths.append(name.strip())
        labels.append(int(label))
    return paths, np.asarray(labels, dtype=np.int64)


class FileListDataset(Dataset):
    """(image (C, size, size) float in [0, 1], label, index) per line of a file list."""

    def __init__(self, root: str | Path, list_file: str | Path, size: int, num_classes: int) -> None:
        self.root = Path(root).expanduser()
        list_path = Path(list_file).expanduser()
        self.paths, labels = read_file_list(list_path if list_path.is_absolute() else self.root / list_path)
        self.labels = torch.as_tensor(labels)
        self.size, self.num_classes = size, num_classes

    def __len__(self) -> int:
        return len(self.paths)

    def class_counts(self) -> list[int]:
        return torch.bincount(self.labels, minlength=self.num_classes).tolist()

    def load(self, i: int) -> torch.Tensor:
        from PIL import Image

        with Image.open(self.root / self.paths[i]) as im:
            im = im.convert("RGB")
            w, h = im.size
            s = self.size / min(w, h)
            im = im.resize((max(self.size, round(w * s)), max(self.size, round(h * s))), Image.BILINEAR)
            w, h = im.size
            left, top = (w - self.size) // 2, (h - self.size) // 2
            im = im.crop((left, top, left + self.size, top + self.size))
            arr = np.asarray(im, dtype=np.float32) / 255.0
        return torch.from_numpy(arr).permute(2, 0, 1).contiguous()

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        return self.load(i), self.labels[i], i


def load_file_list_splits(cfg: FileListDataConfig) -> tuple[FileListDataset, FileListDataset]:
    return (
        FileListDataset(cfg.root, cfg.train_list, cfg.size, cfg.num_classes),
        FileListDataset(cfg.root, cfg.test_list, cfg.size, cfg.num_classes),
    )
