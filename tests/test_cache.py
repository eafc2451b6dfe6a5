"""One cache root for every cache (issue 18.3): ``$REPROLAB_CACHE`` or ``<repo>/.cache``, whatever the
launch directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from data.cache import cache_dir, cache_root

ROOT = Path(__file__).resolve().parent.parent


def _every_cache() -> dict[str, Path]:
    """Each consumer's default cache folder, asked the way the consumer asks for it."""
    from data.llm.loader import cache_dir as loader_cache_dir
    from methods.diffusion_cls.config import DDPMTrainConfig
    from methods.diffusion_cls.ddpm import cache_folder
    from methods.mera.sources import default_cache_dir

    return {
        "root": cache_root(),
        "llm": loader_cache_dir(),
        "diffusion_cls": cache_folder(DDPMTrainConfig()),
        "mera": default_cache_dir(),
    }


def test_caches_do_not_depend_on_the_launch_directory(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("REPROLAB_CACHE", raising=False)
    monkeypatch.chdir(ROOT)
    from_repo = _every_cache()
    monkeypatch.chdir(tmp_path)
    assert _every_cache() == from_repo
    assert from_repo["root"] == ROOT / ".cache"
    assert from_repo["diffusion_cls"] == ROOT / ".cache" / "diffusion_cls"
    assert from_repo["mera"] == ROOT / ".cache" / "mera" / "sources"


def test_reprolab_cache_moves_every_cache(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REPROLAB_CACHE", "elsewhere")  # relative: taken from where it was set, made absolute
    caches = _every_cache()
    target = tmp_path / "elsewhere"
    assert caches["root"] == caches["llm"] == target
    assert caches["diffusion_cls"] == target / "diffusion_cls" and caches["mera"].is_relative_to(target)
    assert cache_dir("x") == target / "x" and not (target / "x").exists()  # asking creates nothing


def test_an_explicit_cache_dir_still_wins(tmp_path: Path) -> None:
    from methods.diffusion_cls.config import DDPMTrainConfig
    from methods.diffusion_cls.ddpm import cache_folder

    assert cache_folder(DDPMTrainConfig(cache_dir=str(tmp_path / "mine"))) == tmp_path / "mine"


def test_torchvision_downloads_go_under_the_cache_root(tmp_path: Path, monkeypatch) -> None:
    from data.config import ImageDataConfig
    from data.vision import datasets

    roots: list[str] = []

    def fake(name: str, root: str, train: bool) -> None:
        roots.append(root)
        raise RuntimeError("stop before downloading")

    monkeypatch.setenv("REPROLAB_CACHE", str(tmp_path))
    monkeypatch.setattr(datasets, "_torchvision", fake)
    with pytest.raises(RuntimeError, match="stop before"):
        datasets.load_image_splits(ImageDataConfig(name="cifar10", source="torchvision"))
    with pytest.raises(RuntimeError, match="stop before"):
        datasets.load_image_splits(
            ImageDataConfig(name="cifar10", source="torchvision", root=str(tmp_path / "own"))
        )
    assert roots == [str(tmp_path / "data"), str(tmp_path / "own")]
