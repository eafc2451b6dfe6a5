"""Diffusion features: block hooks, fixed noise, the on-disk feature and checkpoint caches, heads."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from methods.diffusion_cls import ddpm, features
from methods.diffusion_cls.config import DDPMTrainConfig
from methods.diffusion_cls.ddpm import build_unet, load_or_train, to_model_space
from methods.diffusion_cls.features import CHUNK, FeatureCache, block_modules, extract_all_blocks
from methods.diffusion_cls.heads import AttentionHead, LinearHead
from methods.diffusion_cls.method import standardize

TINY = {
    "sample_size": 8,
    "in_channels": 1,
    "block_out_channels": [8, 16],
    "layers_per_block": 1,
    "norm_num_groups": 4,
}


@pytest.fixture(scope="module")
def unet():
    torch.manual_seed(0)
    return build_unet(TINY).eval()


def test_blocks_and_pooled_shapes(unet) -> None:
    assert list(block_modules(unet)) == ["down.0", "down.1", "mid", "up.0", "up.1"]
    x = to_model_space(torch.rand(5, 1, 8, 8), 8, 1)
    feats = extract_all_blocks(unet, x, t=10, pooling=2, noise_seed=0)
    # encoder 8→4 (down.0 has the only downsampler), decoder back to 8; every map pooled to 2×2
    assert {k: tuple(v.shape) for k, v in feats.items()} == {
        "down.0": (5, 8, 2, 2),
        "down.1": (5, 16, 2, 2),
        "mid": (5, 16, 2, 2),
        "up.0": (5, 16, 2, 2),
        "up.1": (5, 8, 2, 2),
    }


def test_model_space_maps_unit_interval_to_minus_one_one() -> None:
    x = torch.tensor([0.0, 0.5, 1.0]).view(1, 1, 1, 3).expand(1, 1, 3, 3)
    y = to_model_space(x, 3, 3)
    assert y.shape == (1, 3, 3, 3)
    torch.testing.assert_close(y[0, 0, 0], torch.tensor([-1.0, 0.0, 1.0]))


def test_noise_is_fixed_by_seed_and_independent_of_batching(unet) -> None:
    x = to_model_space(torch.rand(CHUNK + 20, 1, 8, 8), 8, 1)
    full = extract_all_blocks(unet, x, t=50, pooling=1, noise_seed=3)["mid"]
    head = extract_all_blocks(unet, x[:CHUNK], t=50, pooling=1, noise_seed=3)["mid"]
    assert torch.allclose(full[:CHUNK], head, atol=1e-6)
    other = extract_all_blocks(unet, x[:CHUNK], t=50, pooling=1, noise_seed=4)["mid"]
    assert not torch.allclose(head, other)
    # at t = 0 the input is almost clean, so two noise seeds barely differ; at t = 999 they differ a lot
    a0, b0 = (extract_all_blocks(unet, x[:64], 0, 1, s)["up.1"] for s in (0, 1))
    a9, b9 = (extract_all_blocks(unet, x[:64], 999, 1, s)["up.1"] for s in (0, 1))
    assert (a0 - b0).abs().mean() < 0.2 * (a9 - b9).abs().mean()


def test_feature_cache_hits_without_running_the_unet(unet, tmp_path: Path, monkeypatch) -> None:
    cache = FeatureCache(tmp_path)
    x = to_model_space(torch.rand(10, 1, 8, 8), 8, 1)
    first = cache.get(unet, "ckpt-a", x, "imgs", "mid", 20, 2, 0, also=["up.1"])
    assert (cache.hits, cache.misses) == (0, 1)
    # only the asked cells are stored: mid and (from the same pass) up.1, not the other three blocks
    assert len(list(tmp_path.glob("*.pt"))) == 2
    monkeypatch.setattr(
        features, "extract_all_blocks", lambda *a, **k: pytest.fail("U-Net ran on a cache hit")
    )
    again = cache.get(unet, "ckpt-a", x, "imgs", "mid", 20, 2, 0)
    up = cache.get(unet, "ckpt-a", x, "imgs", "up.1", 20, 2, 0)
    assert torch.equal(first, again) and up.shape == (10, 8, 2, 2) and cache.hits == 2
    assert first.dtype == torch.float32
    # a different checkpoint, timestep or pooling is a different key
    keys = {
        cache.path(*k)
        for k in [
            ("ckpt-a", "mid", 20, 2, 0, "i"),
            ("ckpt-b", "mid", 20, 2, 0, "i"),
            ("ckpt-a", "mid", 21, 2, 0, "i"),
            ("ckpt-a", "mid", 20, 1, 0, "i"),
        ]
    }
    assert len(keys) == 4


def test_ddpm_checkpoint_is_trained_once(tmp_path: Path, monkeypatch) -> None:
    cfg = DDPMTrainConfig(steps=3, batch_size=4, cache_dir=str(tmp_path))
    images = to_model_space(torch.rand(16, 1, 8, 8), 8, 1)
    unet_a, ckpt_a = load_or_train(TINY, cfg, images, "toy", seed=0)
    monkeypatch.setattr(ddpm, "train_ddpm", lambda *a, **k: pytest.fail("trained twice"))
    unet_b, ckpt_b = load_or_train(TINY, cfg, images, "toy", seed=0)
    assert ckpt_a == ckpt_b
    for pa, pb in zip(unet_a.parameters(), unet_b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert not list(tmp_path.glob("ddpm/*.lock"))


def test_heads_and_standardisation() -> None:
    x = torch.randn(6, 16, 2, 2)
    assert LinearHead(64, 10)(x).shape == (6, 10)
    att = AttentionHead(16, 4, 10, dim=32, heads=4, layers=2)
    assert att(x).shape == (6, 10)
    train, test = standardize(3 * x + 5, x)
    assert torch.allclose(train.flatten(1).mean(0), torch.zeros(64), atol=1e-5)
    assert torch.allclose(train.flatten(1).std(0), torch.ones(64), atol=1e-4)
    assert test.shape == x.shape
