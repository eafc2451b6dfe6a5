"""The paper scale's data and model sources (issue 14): ImageNet-1k and the FGVC sets decoded per item,
the gated / offline hub errors, and the ADM checkpoint by URL or path."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from data.config import ImageDataConfig
from data.vision.lazy_images import LazyImages, center_crop
from tests.test_device_contract import tracker as device_tracker  # noqa: F401  (a fixture)


def imagenet_cfg(hub: Path, **kw) -> ImageDataConfig:
    spec = {"name": "imagenet1k", "hub_id": str(hub), "image_column": "image", "test_split": "validation"}
    return ImageDataConfig(**{**spec, "image_size": 32, **kw})


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.paper.standins import hub_imagenet_repo

    return hub_imagenet_repo(tmp_path_factory.mktemp("in1k"), {"train": 6, "validation": 3, "test": 2})


def test_center_crop_is_guided_diffusions_short_side_resize_then_centre() -> None:
    from PIL import Image

    # three vertical bands, red | green | blue, on a 3:1 image: the centre square is the green band
    bands = np.zeros((40, 120, 3), dtype=np.uint8)
    bands[:, :40, 0] = bands[:, 40:80, 1] = bands[:, 80:, 2] = 255
    out = center_crop(Image.fromarray(bands), 10)  # 40 >= 2*10: box-halved twice to 30x10, then 10x10
    assert out.shape == (3, 10, 10) and out.dtype == np.float32
    assert np.allclose(out[1], 1.0, atol=0.02) and np.allclose(out[[0, 2]], 0.0, atol=0.02)
    grey = center_crop(Image.new("L", (17, 23), 51), 8)  # grey → RGB, an odd size
    assert grey.shape == (3, 8, 8) and np.allclose(grey, 0.2, atol=1 / 255)


def test_imagenet_from_the_hubs_layout_is_decoded_per_item(imagenet: Path) -> None:
    from data.vision.datasets import load_image_splits

    train, test = load_image_splits(imagenet_cfg(imagenet))
    assert isinstance(train, LazyImages) and (len(train), len(test)) == (6, 3)
    assert train.num_classes == 1000 and train.labels.tolist() == [0, 1, 2, 3, 0, 1]
    image, label, i = train[3]
    assert tuple(image.shape) == (3, 32, 32) and int(label) == 3 and i == 3
    assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
    sub = train.subset(np.array([4, 1]))
    assert sub.labels.tolist() == [0, 1] and torch.equal(sub[0][0], train[4][0])
    assert torch.equal(sub.stack(range(2)), torch.stack([train[4][0], train[1][0]]))  # validation batches


def test_imagenets_unlabelled_test_split_is_refused_naming_the_key(imagenet: Path) -> None:
    from data.vision.datasets import load_image_splits

    with pytest.raises(ValueError, match=r"unlabelled.*data\.test_split=validation"):
        load_image_splits(imagenet_cfg(imagenet, test_split="test"))


def test_a_gated_hub_set_says_how_to_get_access(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets
    from datasets.exceptions import DatasetNotFoundError

    from data.vision.lazy_images import load_hub_split

    def gated(*args, **kwargs):
        raise DatasetNotFoundError(
            "Dataset 'ILSVRC/imagenet-1k' is a gated dataset on the Hub. "
            "You must be authenticated to access it."
        )

    monkeypatch.setattr(datasets, "load_dataset", gated)
    cfg = ImageDataConfig(name="imagenet1k", hub_id="ILSVRC/imagenet-1k", image_size=256)
    with pytest.raises(ValueError, match=r"data\.hub_id=ILSVRC/imagenet-1k.*gated.*huggingface-cli login"):
        load_hub_split(cfg, "train")


def test_offline_the_paper_grid_fails_before_loading_naming_the_hub_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runners.validate import ConfigError, validate_overrides

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf" / "datasets"))
    with pytest.raises(ConfigError, match=r"data\.hub_id='ILSVRC/imagenet-1k'.*unreachable"):
        validate_overrides(["method=diffusion_cls", "scale=paper", "data=imagenet1k"], check_machine=True)


def test_adm_checkpoint_by_path_or_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from methods.diffusion_cls.adm import PAPER_CHECKPOINT, checkpoint_file
    from methods.diffusion_cls.config import ADMConfig

    with pytest.raises(FileNotFoundError, match=r"method\.adm\.checkpoint=.*nope\.pt"):
        checkpoint_file(ADMConfig(checkpoint=str(tmp_path / "nope.pt")), tmp_path)
    with pytest.raises(ValueError, match=r"needs method\.adm\.checkpoint"):
        checkpoint_file(ADMConfig(), tmp_path)

    calls = []

    def offline(url: str, dst: str, progress: bool = True) -> None:
        calls.append(url)
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(ValueError, match=r"method\.adm\.checkpoint=https://.*download failed.*URLError"):
        checkpoint_file(ADMConfig(checkpoint=PAPER_CHECKPOINT), tmp_path)
    assert calls == [PAPER_CHECKPOINT] and not list((tmp_path / "adm").iterdir())  # no partial file left

    def download(url: str, dst: str, progress: bool = True) -> None:
        calls.append(url)
        Path(dst).write_bytes(b"weights")

    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    got = checkpoint_file(ADMConfig(checkpoint=PAPER_CHECKPOINT), tmp_path)
    assert got == tmp_path / "adm" / "256x256_diffusion_uncond.pt" and got.read_bytes() == b"weights"
    assert checkpoint_file(ADMConfig(checkpoint=PAPER_CHECKPOINT), tmp_path) == got  # once: cached
    assert len(calls) == 2


def test_what_needs_images_in_memory_refuses_a_lazy_set_by_key() -> None:
    from methods.diffusion_cls.method import DiffusionCls

    lazy = OmegaConf.create({"name": "imagenet1k", "image_size": 256})
    with pytest.raises(ValueError, match=r"method\.probe_protocol=cached.*official"):
        DiffusionCls(unet_source="adm", probe_protocol="cached").check_lazy(lazy)
    with pytest.raises(ValueError, match=r"method\.unet_source=train.*adm"):
        DiffusionCls(unet_source="train", probe_protocol="official").check_lazy(lazy)
    DiffusionCls(unet_source="adm", probe_protocol="official").check_lazy(lazy)  # the paper's: fine
    DiffusionCls(features="raw", probe_protocol="cached").check_lazy(lazy)  # pixels need no U-Net


def test_torchvision_source_names_the_sets_it_has() -> None:
    from data.vision.lazy_images import torchvision_lazy

    cfg = ImageDataConfig(name="imagenet1k", source="torchvision", image_size=256)
    with pytest.raises(
        ValueError, match=r"torchvision has no imagenet1k; choices: aircraft, cars, flowers102"
    ):
        torchvision_lazy(cfg, "/nonexistent", train=True)


def test_heatmap_orders_the_papers_numbered_blocks_after_the_diffusers_levels() -> None:
    from methods.diffusion_cls.heatmap import block_key

    names = ["up.0", "24", "mid", "3", "down.1", "down.0"]
    assert sorted(names, key=block_key) == ["down.0", "down.1", "mid", "up.0", "3", "24"]


@pytest.mark.slow
def test_the_official_protocol_keeps_to_the_runners_device(
    compose,
    tmp_path: Path,
    monkeypatch,
    device_tracker,  # noqa: F811  (the fixture imported above)
) -> None:
    """The device-contract walk (tests/test_device_contract.py) covers the cached smoke run; this is the
    paper scale's protocol: the frozen U-Net run at every forward, on the runner's device (issue 16)."""
    from runners.execute import execute

    monkeypatch.setenv("REPROLAB_CACHE", str(tmp_path / "cache"))
    args = ["method=diffusion_cls", "scale=smoke", "logger=none", "method.probe_protocol=official"]
    execute(compose([*args, "method.shots=3"]), out_dir=tmp_path / "run")
    assert device_tracker.on_device_results > 1000, "the run made nothing on the runner's device"
    assert device_tracker.violations == {}, "\n".join(
        f"{k}: {v}" for k, v in device_tracker.violations.items()
    )
