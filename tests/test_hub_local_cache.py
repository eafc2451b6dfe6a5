"""A local folder in the hub's layout is read as it is now, never from another folder's cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from data.hub import load_dataset_source
from tests.paper.standins import hub_image_repo


def test_two_local_folders_with_one_name_give_their_own_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # one HF datasets cache for both, as a user has: datasets alone would key both by the name "cifar10"
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("REPROLAB_CACHE", str(tmp_path / "cache"))
    small = hub_image_repo(tmp_path / "a" / "cifar10", "cifar10", {"train": 2, "test": 1})
    large = hub_image_repo(tmp_path / "b" / "cifar10", "cifar10", {"train": 5, "test": 1})
    n_small = len(load_dataset_source(str(small), "plain_text", split="train"))
    n_large = len(load_dataset_source(str(large), "plain_text", split="train"))
    assert n_large > n_small > 0


def test_an_edited_folder_is_read_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("REPROLAB_CACHE", str(tmp_path / "cache"))
    folder = hub_image_repo(tmp_path / "cifar10", "cifar10", {"train": 2, "test": 1})
    before = len(load_dataset_source(str(folder), "plain_text", split="train"))
    hub_image_repo(folder, "cifar10", {"train": 4, "test": 1})  # rewritten in place, more rows
    for path in folder.rglob("*.parquet"):  # a later mtime even on a coarse clock
        os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert len(load_dataset_source(str(folder), "plain_text", split="train")) > before


def test_a_home_relative_folder_is_read_as_local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``~/...`` is the user's folder, not a hub id: callers pass their key as written."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("REPROLAB_CACHE", str(tmp_path / "cache"))
    hub_image_repo(tmp_path / "home" / "sets" / "cifar10", "cifar10", {"train": 3, "test": 1})
    assert len(load_dataset_source("~/sets/cifar10", "plain_text", split="train")) > 0
