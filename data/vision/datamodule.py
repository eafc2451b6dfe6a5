"""One LightningDataModule for the vision methods: in-memory ImageSets or lazily decoded file lists.

Batches are ``(images, labels, indices)``: the indices let SBCL look up each image's current subclass
id, and augmentation runs on the batch (data.vision.augment) after it reaches the device.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Dataset

from data.vision.datasets import ImageSet


class IndexedImages(Dataset):
    """An ImageSet as a Dataset of (image, label, index)."""

    def __init__(self, data: ImageSet) -> None:
        self.images, self.labels, self.num_classes = data.images, data.labels, data.num_classes

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        return self.images[i], self.labels[i], i

    def class_counts(self) -> list[int]:
        return torch.bincount(self.labels, minlength=self.num_classes).tolist()


def as_dataset(data: Any) -> Dataset:
    return IndexedImages(data) if isinstance(data, ImageSet) else data


class ImageDataModule(pl.LightningDataModule):
    def __init__(
        self,
        train: Any,
        test: Any,
        batch_size: int,
        num_workers: int = 0,
        seed: int = 0,
        drop_last: bool = True,
    ) -> None:
        super().__init__()
        self.train_set, self.test_set = as_dataset(train), as_dataset(test)
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        # Contrastive batches are dropped when short (a batch of one image has no positives); never at test.
        self.drop_last = drop_last and len(self.train_set) > batch_size
        # One shuffling generator for the whole fit, declared to the fit runner (``generators``) so a
        # resumed fit continues its sequence of epoch orders instead of restarting it.
        self.shuffle_generator = torch.Generator().manual_seed(seed)

    def generators(self) -> dict[str, torch.Generator]:
        return {"shuffle": self.shuffle_generator}

    def _loader(self, ds: Dataset, shuffle: bool, drop_last: bool) -> DataLoader:
        return DataLoader(
            ds,
            batch_size=self.batch_size,
            shuffle=shuffle,
            drop_last=drop_last,
            num_workers=self.num_workers,
            generator=self.shuffle_generator if shuffle else None,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, True, self.drop_last)

    def plain_train_dataloader(self) -> DataLoader:
        """The training set in order, without shuffling: for embedding it (clustering, stage 2)."""
        return self._loader(self.train_set, False, False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, False, False)
