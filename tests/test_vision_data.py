"""Shared vision data: long-tailed / few-shot samplers, offline splits, class groups, augmentations, probes,
encoders and file lists."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from data.config import ImageDataConfig
from data.sampling import few_shot_indices, long_tailed_counts, long_tailed_indices
from data.vision.augment import augment, shift
from data.vision.datasets import load_image_splits
from data.vision.encoders import build_encoder
from data.vision.file_list import FileListDataset, read_file_list
from data.vision.options import AugmentConfig, ProbeConfig
from data.vision.probes import effective_number_weights, ldam_loss, ldam_margins, train_linear_probe
from data.vision.sources import load_splits
from data.vision.splits import frequency_groups, group_accuracies


def test_long_tailed_counts_follow_the_exponential_profile() -> None:
    # n_c = ⌊100 · 10^(−c/9)⌋
    assert long_tailed_counts(100, 10, 10) == [100, 77, 59, 46, 35, 27, 21, 16, 12, 10]
    assert long_tailed_counts(50, 3, 1) == [50, 50, 50]


def test_digits_lt_train_counts_and_balanced_test_set() -> None:
    balanced_train, balanced_test = load_image_splits(ImageDataConfig(name="digits"))
    train, test = load_image_splits(ImageDataConfig(name="digits", imbalance_ratio=10), seed=3)
    n_max = min(balanced_train.class_counts())
    assert train.class_counts() == long_tailed_counts(n_max, 10, 10)
    # the test set is the balanced split, untouched by the long-tailed cut
    assert torch.equal(test.labels, balanced_test.labels) and torch.equal(test.images, balanced_test.images)
    counts = test.class_counts()
    assert max(counts) <= 1.1 * min(counts) and sum(counts) == len(
        test
    )  # digits itself has 174–183 per class
    # the cut is a subset of the balanced training images, chosen by the seed
    other, _ = load_image_splits(ImageDataConfig(name="digits", imbalance_ratio=10), seed=4)
    assert not torch.equal(train.images, other.images)


def test_few_shot_indices_exact_counts_and_errors() -> None:
    labels = np.repeat(np.arange(4), [9, 7, 5, 6])
    idx = few_shot_indices(labels, 5, seed=0)
    assert np.bincount(labels[idx]).tolist() == [5, 5, 5, 5] and len(set(idx)) == 20
    assert np.array_equal(idx, few_shot_indices(labels, 5, seed=0))
    with pytest.raises(ValueError, match="class 2 has 5 examples"):
        few_shot_indices(labels, 6, seed=0)
    lt = long_tailed_indices(np.repeat(np.arange(3), 10), 10, seed=0)
    assert np.bincount(np.repeat(np.arange(3), 10)[lt]).tolist() == [10, 3, 1]


def test_frequency_groups_tertiles_and_thresholds() -> None:
    counts = [122, 94, 73, 56, 43, 33, 26, 20, 15, 12]
    assert frequency_groups(counts).tolist() == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert frequency_groups([5, 50, 500]).tolist() == [2, 1, 0]  # by count, not by class id
    assert frequency_groups([150, 100, 50, 20, 19], "thresholds").tolist() == [0, 1, 1, 1, 2]
    with pytest.raises(ValueError, match="tertiles"):
        frequency_groups(counts, "quartiles")


def test_group_accuracies_by_hand() -> None:
    labels = np.array([0, 0, 1, 1, 2, 2, 2, 2])
    pred = np.array([0, 0, 1, 0, 0, 0, 2, 2])
    out = group_accuracies(pred, labels, np.array([0, 1, 2]), 3)
    assert out["acc"] == pytest.approx(5 / 8)
    assert out["balanced_acc"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert (out["head_acc"], out["medium_acc"], out["tail_acc"]) == pytest.approx((1.0, 0.5, 0.5))
    assert np.isnan(group_accuracies(pred, labels, np.array([0, 0, 0]), 3)["tail_acc"])


def test_shift_is_a_translation_and_augment_is_seeded() -> None:
    x = torch.zeros(64, 1, 8, 8)
    x[:, 0, 4, 4] = 1.0
    y = shift(x, 1, torch.Generator().manual_seed(0))
    assert torch.all(y.sum(dim=(1, 2, 3)) == 1)  # the pixel moved, nothing was lost
    rows, cols = (y[:, 0] == 1).nonzero()[:, 1], (y[:, 0] == 1).nonzero()[:, 2]
    assert rows.min() == 3 and rows.max() == 5 and cols.min() == 3 and cols.max() == 5
    cfg = AugmentConfig(kind="small")
    a = augment(x, cfg, torch.Generator().manual_seed(1))
    b = augment(x, cfg, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, augment(x, cfg, torch.Generator().manual_seed(2)))
    img = torch.rand(8, 3, 16, 16)
    out = augment(img, AugmentConfig(kind="cifar"), torch.Generator().manual_seed(0))
    assert out.shape == img.shape and out.min() >= 0 and out.max() <= 1
    assert torch.equal(augment(img, AugmentConfig(kind="none"), torch.Generator()), img)


def test_ldam_margins_and_class_weights_by_hand() -> None:
    # m_c ∝ n_c^(−1/4): 16 → 1/2, 1 → 1, scaled so the largest is 0.5
    assert ldam_margins([16, 1], 0.5).tolist() == pytest.approx([0.25, 0.5])
    w = effective_number_weights([1, 2], beta=0.5)  # (1−β)/(1−β^n): 1, 2/3 → normalised to sum 2
    assert w.tolist() == pytest.approx([2 * 1 / (1 + 2 / 3), 2 * (2 / 3) / (1 + 2 / 3)])
    cos = torch.tensor([[0.5, 0.2]])
    loss = ldam_loss(cos, torch.tensor([0]), torch.tensor([0.1, 0.3]), 10.0, None)
    expected = -torch.log_softmax(torch.tensor([10 * 0.4, 10 * 0.2]), 0)[0]
    assert float(loss) == pytest.approx(float(expected))


@pytest.mark.parametrize("loss", ["ce", "balanced", "ldam_drw"])
def test_linear_probe_separates_separable_classes(loss: str) -> None:
    g = torch.Generator().manual_seed(0)
    centres = torch.eye(3) * 4
    labels = torch.tensor([0] * 40 + [1] * 10 + [2] * 4)
    feats = centres[labels] + 0.3 * torch.randn(len(labels), 3, generator=g)
    head = train_linear_probe(feats, labels, 3, ProbeConfig(loss=loss, epochs=100, drw_epoch=50), seed=0)
    assert (head(feats).argmax(1) == labels).float().mean().item() == pytest.approx(1.0)


def test_encoders_shapes_and_resnet32_size() -> None:
    x = torch.rand(2, 1, 8, 8)
    for cfg in ({"name": "mlp", "hidden_dims": [32, 16]}, {"name": "small_cnn", "channels": [8, 12]}):
        enc, dim = build_encoder(cfg, (1, 8, 8))
        assert enc(x).shape == (2, dim) and dim == (16 if cfg["name"] == "mlp" else 12)
    enc, dim = build_encoder({"name": "resnet32"}, (3, 32, 32))
    assert dim == 64 and enc(torch.rand(2, 3, 32, 32)).shape == (2, 64)
    n_params = sum(p.numel() for p in enc.parameters())
    assert 0.45e6 < n_params < 0.48e6  # ResNet-32 has 0.46M parameters (He et al. 2016, Table 6)


def test_file_list_parsing_and_lazy_dataset(tmp_path: Path) -> None:
    from PIL import Image

    for i, colour in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255)]):
        (tmp_path / "imgs").mkdir(exist_ok=True)
        Image.new("RGB", (12 + 4 * i, 10), colour).save(tmp_path / "imgs" / f"{i}.png")
    (tmp_path / "train.txt").write_text("# comment\nimgs/0.png 0\n\nimgs/1.png 2\nimgs/2.png 2\n")
    (tmp_path / "test.txt").write_text("imgs/2.png 1\n")
    paths, labels = read_file_list(tmp_path / "train.txt")
    assert paths == ["imgs/0.png", "imgs/1.png", "imgs/2.png"] and labels.tolist() == [0, 2, 2]
    ds = FileListDataset(tmp_path, "train.txt", size=8, num_classes=3)
    x, y, i = ds[1]
    assert x.shape == (3, 8, 8) and int(y) == 2 and i == 1
    assert torch.allclose(x[1], torch.ones(8, 8)) and float(x[0].max()) == 0.0  # the green image
    assert ds.class_counts() == [1, 0, 2]
    train, test = load_splits(
        {
            "name": "tiny",
            "root": str(tmp_path),
            "train_list": "train.txt",
            "test_list": "test.txt",
            "size": 8,
            "num_classes": 3,
        },
        seed=0,
    )
    assert len(train) == 3 and len(test) == 1
    (tmp_path / "bad.txt").write_text("imgs/0.png zero\n")
    with pytest.raises(ValueError, match=r"bad\.txt:1"):
        read_file_list(tmp_path / "bad.txt")


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_hub_image_sets_load_from_a_folder_in_the_hubs_layout(compose, tmp_path: Path, name: str) -> None:
    """data.hub_id takes a local folder laid out as the hub repo (card, parquet, columns); the same
    load_dataset call decodes it to (N, C, H, W) floats in [0, 1] with the labels of the label column."""
    from datasets import load_dataset

    from tests.paper.standins import hub_image_repo

    folder = hub_image_repo(tmp_path / name, name, {"train": 24, "test": 12})
    cfg = compose(["method=scool", f"data={name}", f"data.hub_id={folder}"]).data
    assert cfg.source == "hub" and cfg.hub_config == ("plain_text" if name == "cifar10" else "cifar100")
    train, test = load_image_splits(cfg)
    assert train.images.shape == (24, 3, 32, 32) and test.images.shape == (12, 3, 32, 32)
    assert (
        train.images.dtype == torch.float32
        and 0 <= float(train.images.min()) <= float(train.images.max()) <= 1
    )
    assert train.num_classes == (10 if name == "cifar10" else 100)  # from the ClassLabel feature
    raw = load_dataset(str(folder), cfg.hub_config, split="train")
    assert train.labels.tolist() == raw[cfg.label_column]
    pixels = np.asarray(raw[3][cfg.image_column], dtype=np.float32).transpose(2, 0, 1) / 255
    np.testing.assert_allclose(train.images[3].numpy(), pixels, atol=1e-6)


def test_hub_source_names_a_missing_column(tmp_path: Path) -> None:
    from tests.paper.standins import hub_image_repo

    folder = hub_image_repo(tmp_path / "c", "cifar100", {"train": 4, "test": 4})
    cfg = ImageDataConfig(name="cifar100", hub_id=str(folder), hub_config="cifar100", label_column="label")
    with pytest.raises(ValueError, match=r"no column 'label'.*fine_label"):
        load_image_splits(cfg)
    with pytest.raises(ValueError, match=r"data\.source"):
        ImageDataConfig(name="cifar10", source="tfds")


def test_preflight_checks_the_image_sets_hub_id_as_a_dataset(monkeypatch, tmp_path: Path) -> None:
    """An offline data=cifar10 fails before any loading, naming data.hub_id; a local folder passes."""
    from runners.schemas import register_all
    from runners.validate import ConfigError, validate_overrides

    register_all()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match=r"data\.hub_id='uoft-cs/cifar10' is a Hugging Face hub dataset"):
        validate_overrides(["method=scool", "data=cifar10"], check_machine=True)
    validate_overrides(["method=scool", "data=cifar10", f"data.hub_id={tmp_path}"], check_machine=True)
