"""Which loader a ``data`` config node means: the in-memory sets (data.vision.datasets) or file lists."""

from __future__ import annotations

from typing import Any

from data.vision.datasets import load_image_splits


def load_splits(data_cfg: Any, seed: int) -> tuple[Any, Any]:
    """(train, test) datasets; file-list configs (``train_list`` key) load lazily from disk."""
    if "train_list" in data_cfg:
        from omegaconf import OmegaConf

        from data.vision.file_list import load_file_list_splits
        from data.vision.options import FileListDataConfig

        node = OmegaConf.to_container(data_cfg) if not isinstance(data_cfg, dict) else data_cfg
        return load_file_list_splits(FileListDataConfig(**{k: v for k, v in node.items() if k != "_target_"}))
    return load_image_splits(data_cfg, seed)
