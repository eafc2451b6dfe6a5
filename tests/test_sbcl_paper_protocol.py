"""SBCL's paper-scale protocol, part by part, against the official code's numbers (JackHck/SBCL): the fixed
long-tailed subset, the colour jitter with hue, the input normalisation, the stage-1 and stage-2
schedules, stage 2 on crop/flip views with a test-selected figure kept apart, and the paper-scale refusals."""

from __future__ import annotations

import colorsys
import math

import numpy as np
import pytest
import torch
from torch import nn


def test_official_lt_subset_is_imbalance_cifars_and_fixed() -> None:
    from data.vision.imbalance_cifar import imbalance_cifar_counts, imbalance_cifar_indices

    # The CIFAR-LT sizes every LT paper quotes (train images at imbalance 100 / 50 / 10).
    totals = {(10, r): sum(imbalance_cifar_counts(50_000, 10, r)) for r in (100, 50, 10)}
    totals |= {(100, r): sum(imbalance_cifar_counts(50_000, 100, r)) for r in (100, 50, 10)}
    assert totals == {
        (10, 100): 12406,
        (10, 50): 13996,
        (10, 10): 20431,
        (100, 100): 10847,
        (100, 50): 12608,
        (100, 10): 19573,
    }
    assert imbalance_cifar_counts(50_000, 10, 100) == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]

    labels = np.tile(np.arange(4), 30)  # 30 per class, interleaved as CIFAR's batches are
    keep = imbalance_cifar_indices(labels, 10, rand_number=0)
    # By hand, as IMBALANCECIFAR10: np.random.seed(0), then per class shuffle its indices, keep the first n_c.
    np.random.seed(0)
    expected = []
    for c, n in zip(range(4), [30, 13, 6, 3], strict=True):
        idx = np.where(labels == c)[0]
        np.random.shuffle(idx)
        expected.append(idx[:n])
    np.testing.assert_array_equal(keep, np.concatenate(expected))
    assert not np.array_equal(keep, imbalance_cifar_indices(labels, 10, rand_number=1))


def test_method_cuts_the_official_subset_whatever_the_run_seed(monkeypatch) -> None:
    from omegaconf import OmegaConf

    import methods.sbcl.method as method_module
    from data.vision.datasets import ImageSet

    labels = torch.arange(10).repeat(20)  # 20 per class
    balanced = ImageSet(torch.rand(200, 3, 4, 4), labels, 10)
    seen: list[float] = []

    def fake_load(cfg, seed):
        seen.append(float(cfg.imbalance_ratio))
        return balanced, balanced

    monkeypatch.setattr(method_module, "load_splits", fake_load)
    data = OmegaConf.create({"name": "cifar10", "imbalance_ratio": 10.0})
    sbcl = method_module.SBCL(lt_subset="official", classifier="balanced")
    (a, _), (b, _) = sbcl.load_data(data, seed=0), sbcl.load_data(data, seed=7)
    assert seen == [1.0, 1.0]  # the balanced set is loaded, the cut is the official one
    assert torch.equal(a.images, b.images) and a.class_counts() == b.class_counts()
    assert a.class_counts()[0] == 20 and a.class_counts()[-1] == 2


def test_hue_shift_matches_hsv_and_jitter_follows_the_official_ranges() -> None:
    from data.vision.augment import colour, shift_hue
    from data.vision.options import AugmentConfig

    x = torch.rand(3, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    delta = torch.tensor([0.1, -0.05, 0.5])
    out = shift_hue(x, delta)
    ref = np.zeros(x.shape, dtype=np.float32)
    for n in range(3):
        for i in range(5):
            for j in range(5):
                h, s, v = colorsys.rgb_to_hsv(*x[n, :, i, j].tolist())
                ref[n, :, i, j] = colorsys.hsv_to_rgb((h + float(delta[n])) % 1.0, s, v)
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-5)
    red = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    assert torch.allclose(
        shift_hue(red, torch.tensor([1 / 3])), torch.tensor([0.0, 1.0, 0.0]).view(1, 3, 1, 1)
    )

    g = torch.Generator().manual_seed(1)
    plain = AugmentConfig(kind="cifar", jitter_p=1.0, jitter_strength=0.0, jitter_hue=0.0, grayscale_p=0.0)
    assert torch.allclose(colour(x, plain, g), x, atol=1e-6)  # zero-strength jitter is the identity
    grey = AugmentConfig(kind="cifar", jitter_p=0.0, grayscale_p=1.0)
    luma = 0.2989 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]  # torchvision's rgb_to_grayscale
    assert torch.allclose(colour(x, grey, g), luma[:, None].expand_as(x), atol=1e-6)
    hue_only = AugmentConfig(kind="cifar", jitter_p=1.0, jitter_strength=0.0, jitter_hue=0.1, grayscale_p=0.0)
    moved = colour(x, hue_only, g)
    assert not torch.allclose(moved, x, atol=1e-3)  # the hue term is on by default (0.1) and acts
    assert AugmentConfig(kind="cifar").jitter_hue == pytest.approx(0.1)


def test_input_normalisation_is_the_encoders_first_layer() -> None:
    from data.vision.augment import Normalize
    from methods.sbcl.config import SBCLConfig
    from methods.sbcl.module import SBCLModule

    mean, std = [0.4914, 0.4822, 0.4465], [0.2023, 0.1994, 0.2010]
    cfg = SBCLConfig(input_mean=mean, input_std=std, proj_dim=4)
    inner = nn.Flatten()
    module = SBCLModule(cfg, inner, 3 * 2 * 2, [3, 2], seed=0)
    assert isinstance(module.encoder[0], Normalize)
    x = torch.rand(2, 3, 2, 2)
    expected = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert torch.allclose(module.encoder(x), expected.flatten(1), atol=1e-6)
    assert (
        SBCLModule(SBCLConfig(proj_dim=4), nn.Flatten(), 12, [3, 2], seed=0).encoder.__class__ is nn.Flatten
    )
    with pytest.raises(ValueError, match="input_mean"):
        SBCLConfig(input_mean=mean, input_std=std[:2])


def test_stage1_schedule_is_the_official_cosine_to_lr_1e4_with_warmup_from_001() -> None:
    from methods.sbcl.config import SBCLConfig
    from methods.sbcl.module import stage1_lr_factor

    cfg = SBCLConfig(lr=0.5, epochs=1000, lr_warmup_epochs=10)
    spe = 4
    lr = [0.5 * stage1_lr_factor(cfg, spe)(s) for s in range(1000 * spe)]
    eta_min = 0.5 * 1e-4

    def cosine(e: int) -> float:
        return eta_min + (0.5 - eta_min) * (1 + math.cos(math.pi * e / 1000)) / 2

    assert lr[0] == pytest.approx(0.01)  # warmup_from, an absolute lr
    assert lr[20] == pytest.approx(0.01 + 0.5 * (cosine(10) - 0.01))  # halfway through the ramp
    assert lr[40] == pytest.approx(cosine(10))  # the ramp ends on the cosine
    assert lr[41:44] == pytest.approx([lr[40]] * 3)  # per epoch, not per step
    assert lr[500 * spe] == pytest.approx(cosine(500))
    assert lr[-1] == pytest.approx(cosine(999)) and lr[-1] > eta_min


def test_stage2_step_schedule_is_linear_classifys() -> None:
    from data.vision.options import ProbeConfig
    from methods.sbcl.stage2 import step_lr

    cfg = ProbeConfig(lr=0.1, epochs=200, schedule="step", warmup_epochs=5, milestones=[140, 180])
    lrs = [step_lr(e, cfg) for e in range(200)]
    # adjust_learning_rate(epoch + 1): lr·e/5 for e ≤ 5, ×0.1 for e > 140, ×0.01 for e > 180.
    assert lrs[:5] == pytest.approx([0.02, 0.04, 0.06, 0.08, 0.1])
    assert lrs[5] == pytest.approx(0.1) and lrs[139] == pytest.approx(0.1)
    assert lrs[140] == pytest.approx(0.01) and lrs[179] == pytest.approx(0.01)
    assert lrs[180] == pytest.approx(0.001) and lrs[199] == pytest.approx(0.001)


def test_stage2_trains_on_fresh_crop_flip_views_and_keeps_the_test_selected_figure_apart() -> None:
    from torch.utils.data import DataLoader

    from data.vision.datamodule import IndexedImages
    from data.vision.datasets import ImageSet
    from data.vision.options import ProbeConfig
    from methods.sbcl.stage2 import train_on_views

    g = torch.Generator().manual_seed(0)
    labels = torch.tensor([0] * 30 + [1] * 10 + [2] * 5)
    images = torch.rand(45, 3, 6, 6, generator=g) * 0.2
    images[:, 0] += (labels == 0).float().view(-1, 1, 1) * 0.8  # each class its own bright channel
    images[:, 1] += (labels == 1).float().view(-1, 1, 1) * 0.8
    images[:, 2] += (labels == 2).float().view(-1, 1, 1) * 0.8
    train = IndexedImages(ImageSet(images, labels, 3))
    test = DataLoader(IndexedImages(ImageSet(images, labels, 3)), batch_size=16)

    seen: list[torch.Tensor] = []

    class Pool(nn.Module):  # channel means: invariant to crops and flips, so the head can learn
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(x.detach().clone())
            return x.mean(dim=(2, 3))

    cfg = ProbeConfig(
        loss="ldam_drw", epochs=6, lr=0.1, weight_decay=0.0, batch_size=64, drw_epoch=0, views="crop_flip",
        pad=2, schedule="step", warmup_epochs=2, milestones=[4],
    )  # fmt: skip
    result = train_on_views(Pool(), train, test, 3, cfg, seed=0, device=torch.device("cpu"))
    assert len(result.test_acc) == 6 and max(result.test_acc) >= result.test_acc[-1]
    assert 1 <= result.best_epoch <= 6 and result.test_acc[result.best_epoch - 1] == max(result.test_acc)
    assert result.test_acc[-1] > 0.9  # separable by channel: the classifier learns
    # Training batches are views, not the clean images: zero-padded shifts or flips change the pixels.
    train_batches = [b for b in seen if len(b) == 45]
    assert len(train_batches) == 6 and not torch.equal(train_batches[0], images)
    assert not torch.equal(train_batches[0], train_batches[1])  # fresh views every epoch


def test_paper_scale_composes_the_official_protocol_and_refuses_imagenet(compose) -> None:
    from runners.validate import ConfigError, validate_overrides

    for arm in ("sbcl", "supcon"):
        m = compose(["experiment=sbcl_lt", "scale=paper", f"method={arm}", "data=cifar10_lt"]).method
        assert (m.split_rule, m.many, m.few, m.lt_subset, m.lt_rand_number) == (
            "thresholds",
            100,
            20,
            "official",
            0,
        )
        assert list(m.input_mean) == pytest.approx([0.4914, 0.4822, 0.4465])
        assert list(m.input_std) == pytest.approx([0.2023, 0.1994, 0.2010])
        assert (m.lr_min_ratio, m.lr_warmup_from, m.augment.jitter_hue) == pytest.approx((1e-4, 0.01, 0.1))
        p = m.probe
        assert (p.views, p.pad, p.schedule, p.warmup_epochs, list(p.milestones)) == (
            "crop_flip",
            4,
            "step",
            5,
            [140, 180],
        )
        assert (p.weight_decay, p.epochs, p.batch_size, p.lr, p.loss) == (0.0, 200, 128, 0.1, "ldam_drw")
    small = compose(["experiment=sbcl_lt", "scale=small", "method=sbcl"]).method
    assert (small.split_rule, small.lt_subset, small.probe.views, small.paper_data) == (
        "tertiles",
        "per_seed",
        "none",
        "",
    )

    for data, model in (("imagenet_lt", "resnet50"), ("inaturalist2018", "resnet50")):
        with pytest.raises(ConfigError, match=rf"data={data} at scale=paper is not reproduced.*MoCo queue"):
            validate_overrides(
                ["experiment=sbcl_lt", "scale=paper", "method=sbcl", f"data={data}", f"model={model}"]
            )
    # scale=small keeps the file lists runnable (an explicit user choice, not the paper's recipe)
    validate_overrides(["method=sbcl", "scale=small", "data=imagenet_lt", "model=resnet50"])


def test_report_prints_a_dash_for_not_found_paper_numbers_and_skips_metrics_no_run_reports(tmp_path) -> None:
    import json
    from pathlib import Path

    from runners.report import make_report

    experiment = Path(__file__).resolve().parent.parent / "conf" / "experiment" / "sbcl_lt.yaml"
    for scale, data, ratio, metrics in (
        ("paper", "cifar10", 100.0, {"acc": 0.5, "acc_test_selected": 0.55}),
        ("small", "digits", 10.0, {"acc": 0.9}),  # stage 2 on features: no per-epoch test figure
    ):
        sweep = tmp_path / scale
        overrides = ["method=sbcl", f"data.imbalance_ratio={ratio}", "seed=0"]
        record = {
            "status": "completed",
            "scale": scale,
            "method": "sbcl",
            "data": data,
            "seed": 0,
            "overrides": overrides,
            "config": {"method": {"name": "sbcl"}, "data": {"name": data, "imbalance_ratio": ratio}},
            "metrics": metrics,
        }
        (sweep / "job").mkdir(parents=True)
        (sweep / "job" / "results.json").write_text(json.dumps(record))
        text = make_report(sweep, experiment=experiment)
        acc = text.split("## acc (%) (↑)\n", 1)[1].split("\n## ", 1)[0]
        if scale == "paper":
            assert "| paper sbcl |" in acc and "| cifar10 | 100.0 | 50.0 (n=1) | — |" in acc
            assert "## acc_test_selected (%) (↑)" in text
        else:
            assert "paper sbcl" not in acc and "## acc_test_selected" not in text and "missing" not in text
