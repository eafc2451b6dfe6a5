"""Diffusion features at paper scale (issue 14): the random-U-Net baseline of a loaded U-Net, pooling that
never upsamples, the half-precision cache of only the asked cells, the official probe protocol and the
official attention head."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from methods.diffusion_cls.method import DiffusionCls


def tiny_hub_unet(folder: Path) -> Path:
    """A tiny random diffusers UNet2DModel of the CIFAR layout (RGB, attention blocks), saved with
    save_pretrained: what a hub id such as google/ddpm-cifar10-32 holds, in miniature."""
    from diffusers import UNet2DModel

    torch.manual_seed(123)
    UNet2DModel(
        sample_size=8,
        in_channels=3,
        out_channels=3,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
        attention_head_dim=4,
    ).save_pretrained(folder)
    return folder


def test_random_unet_baseline_has_the_loaded_unets_architecture(tmp_path: Path) -> None:
    source = str(tiny_hub_unet(tmp_path / "unet"))
    ctx = SimpleNamespace(seed=0, cfg=None)  # the hub path needs neither model= nor data
    trained, _, spec = DiffusionCls(features="unet", unet_source="hub", hub_name=source).unet(ctx, None, "d")
    method = DiffusionCls(features="random_unet", unet_source="hub", hub_name=source)
    random, ckpt, spec_r = method.unet(ctx, None, "d")
    assert spec == spec_r == {"sample_size": 8, "in_channels": 3}  # not the offline 8x8 grey tiny U-Net
    assert type(random) is type(trained) and ckpt.startswith("random-0-")
    keep = {k: v for k, v in dict(trained.config).items() if not k.startswith("_")}
    assert {k: v for k, v in dict(random.config).items() if not k.startswith("_")} == keep
    shapes = {k: v.shape for k, v in trained.state_dict().items()}
    assert {k: v.shape for k, v in random.state_dict().items()} == shapes
    differ = [k for k, v in random.state_dict().items() if not torch.allclose(v, trained.state_dict()[k])]
    assert len(differ) > len(shapes) // 3  # fresh init: weights differ (norm gains / zero biases may not)
    # the same seed gives the same random U-Net, another seed another one
    again, ckpt_again, _ = method.unet(ctx, None, "d")
    other, ckpt_other, _ = method.unet(SimpleNamespace(seed=1, cfg=None), None, "d")
    w = "conv_in.weight"
    assert ckpt_again == ckpt and torch.equal(again.state_dict()[w], random.state_dict()[w])
    assert ckpt_other != ckpt and not torch.allclose(other.state_dict()[w], random.state_dict()[w])


def test_pooling_never_upsamples() -> None:
    from methods.diffusion_cls.features import pool

    x = torch.randn(2, 3, 4, 4)
    torch.testing.assert_close(pool(x, 16), x)  # a 4×4 map pooled "to 16" stays 4×4, unchanged
    assert pool(torch.randn(2, 3, 32, 32), 16).shape == (2, 3, 16, 16)
    torch.testing.assert_close(pool(x, 1), x.mean(dim=(2, 3), keepdim=True))


def test_cache_is_float16_on_disk_and_a_probe_on_it_matches_float32(tmp_path: Path) -> None:
    from methods.diffusion_cls.ddpm import build_unet, to_model_space
    from methods.diffusion_cls.features import FeatureCache, extract_all_blocks

    torch.manual_seed(0)
    tiny = {"sample_size": 8, "in_channels": 1, "block_out_channels": [8, 16]}
    unet = build_unet({**tiny, "layers_per_block": 1, "norm_num_groups": 4}).eval()
    images, labels = torch.rand(120, 1, 8, 8), torch.arange(120) % 3
    images[:, :, :4] += 0.5 * (labels == 0).float().view(-1, 1, 1, 1)  # a learnable class signal
    images[:, :, :, :4] += 0.5 * (labels == 1).float().view(-1, 1, 1, 1)
    x = to_model_space(images.clamp(0, 1), 8, 1)
    # 16 > every map here (8×8 and 4×4): stored at the map size, not upsampled
    fp32 = extract_all_blocks(unet, x, t=10, pooling=16, noise_seed=0, blocks=["up.1", "mid"])
    assert fp32["up.1"].shape == (120, 8, 8, 8) and fp32["mid"].shape == (120, 16, 4, 4)
    cache = FeatureCache(tmp_path)
    got = cache.get(unet, "ck", x, "imgs", "up.1", 10, 16, 0)
    (stored,) = tmp_path.glob("*.pt")
    assert torch.load(stored, weights_only=True).dtype == torch.float16
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, fp32["up.1"], rtol=2e-3, atol=1e-3)

    def probe(f: torch.Tensor) -> torch.Tensor:
        torch.manual_seed(0)
        head = torch.nn.Linear(f[0].numel(), 3)
        opt = torch.optim.SGD(head.parameters(), lr=0.1)
        for _ in range(30):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(head(f.flatten(1)), labels).backward()
            opt.step()
        return head(f.flatten(1)).detach()

    a, b = probe(fp32["up.1"]), probe(got)
    torch.testing.assert_close(b, a, rtol=1e-2, atol=1e-2)
    assert float((a.argmax(1) == b.argmax(1)).float().mean()) > 0.97


def test_official_crop_flip_windows_and_flips() -> None:
    from methods.diffusion_cls.protocol import crop_flip

    ramp = torch.linspace(0, 1, 32).view(1, 1, 1, 32).expand(400, 1, 32, 32).contiguous()
    out = crop_flip(ramp, 16, 0.8, torch.Generator().manual_seed(0))
    assert out.shape == (400, 1, 16, 16)
    slope = out[:, 0, 0, -1] - out[:, 0, 0, 0]  # the ramp's span inside the window, signed by the flip
    flipped = slope < 0
    assert 0.4 < float(flipped.float().mean()) < 0.6
    # a window of 80-100% of the side: 16 output pixel centres span 15/16 of it, and the 32-pixel ramp
    # rises 31/32 of its range between its own first and last centres: span = fraction · 30/31
    frac = slope.abs() * 31 / 30
    assert float(frac.min()) > 0.8 - 1e-4 and float(frac.max()) < 1.0 + 1e-4
    assert float(frac.max() - frac.min()) > 0.15  # the window size is drawn, not fixed
    again = crop_flip(ramp, 16, 0.8, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, again)  # seeded by the generator alone


def test_official_protocol_fresh_noise_in_training_fixed_at_evaluation() -> None:
    from methods.diffusion_cls.config import DiffusionClsConfig
    from methods.diffusion_cls.ddpm import build_unet
    from methods.diffusion_cls.heads import LinearHead
    from methods.diffusion_cls.module import OnlineProbeModule
    from methods.diffusion_cls.protocol import OnlineFeatures

    torch.manual_seed(0)
    spec = {"sample_size": 8, "in_channels": 1, "block_out_channels": [8, 16]}
    unet = build_unet({**spec, "layers_per_block": 1, "norm_num_groups": 4})
    online = OnlineFeatures(unet, spec, "up.1", 50, 2, 0.8)
    cfg = DiffusionClsConfig(probe_protocol="official")
    assert cfg.standardize is False  # the official head has no feature standardisation
    module = OnlineProbeModule(cfg, LinearHead(8 * 2 * 2, 3), online, seed=0)
    assert not any(k.startswith(("features", "unet")) for k in module.state_dict())  # head only
    assert {n for n, _ in module.named_parameters()} == {"head.fc.weight", "head.fc.bias"}
    x = torch.rand(6, 1, 8, 8)
    module.train()
    a, b = module(x), module(x)
    assert not torch.allclose(a, b)  # fresh noise and a fresh crop at every training forward
    module.eval()
    torch.testing.assert_close(module(x, eval_key=0), module(x, eval_key=0))
    assert not torch.allclose(module(x, eval_key=0), module(x, eval_key=1))
    # one SGD step moves the head only; the U-Net is frozen and stays in eval mode
    module.train()
    before = [p.clone() for p in unet.parameters()]
    opt = torch.optim.SGD(module.parameters(), lr=0.1)
    torch.nn.functional.cross_entropy(module(x), torch.tensor([0, 1, 2, 0, 1, 2])).backward()
    opt.step()
    assert not unet.training
    assert all(torch.equal(p, q) for p, q in zip(before, unet.parameters(), strict=True))
    with pytest.raises(ValueError, match="standardize"):
        DiffusionClsConfig(probe_protocol="official", standardize=True)


def test_paper_budget_uses_the_official_protocol(compose) -> None:
    cfg = compose(["method=diffusion_cls", "scale=paper"])
    assert cfg.method.probe_protocol == "official" and cfg.method.standardize is False
    small = compose(["method=diffusion_cls", "scale=small"])
    assert small.method.probe_protocol == "cached"


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["cached", "official"])
def test_both_protocols_run_on_the_smoke_config(compose, tmp_path: Path, protocol: str) -> None:
    import json

    from runners.execute import execute

    args = [
        "method=diffusion_cls",
        "scale=smoke",
        "logger=none",
        f"method.ddpm.cache_dir={tmp_path / 'cache'}",
        f"method.probe_protocol={protocol}",
        "method.shots=5",
        "method.val_fraction=0.2",
    ]
    execute(compose(args), out_dir=tmp_path / "run")
    m = json.loads((tmp_path / "run" / "results.json").read_text())["metrics"]
    assert 0.0 <= m["test_acc"] <= 1.0 and 0.0 <= m["val_acc"] <= 1.0
    stored = list((tmp_path / "cache" / "features").glob("*.pt"))
    # cached: train + test features of the asked cell; official: nothing stored, made per forward
    assert len(stored) == (2 if protocol == "cached" else 0)
    if protocol == "cached":
        assert m["feature_cache_misses"] == 2


def test_official_attention_head_shapes_and_a_training_step() -> None:
    from methods.diffusion_cls.config import DiffusionClsConfig
    from methods.diffusion_cls.heads import OfficialAttentionHead, ViTBlock

    official = DiffusionClsConfig(head="attention")
    assert (official.lr, official.pooling) == (5e-2, 16)  # the official attention.sh
    assert (official.attention_dim, official.attention_heads, official.attention_layers) == (1024, 8, 2)
    assert (DiffusionClsConfig().lr, DiffusionClsConfig().pooling) == (1e-2, 2)  # linear.sh
    torch.manual_seed(0)
    # a 32×32 map is pooled to 16×16 inside the head; an 8×8 one kept at 8×8
    for size, tokens in ((32, 16 * 16), (8, 8 * 8)):
        head = OfficialAttentionHead(12, (size, size), 5, dim=32, heads=8, layers=2)
        assert tuple(head.norm.normalized_shape) == (12, min(size, 16), min(size, 16))  # LN over [C, H, W]
        assert head.proj.kernel_size == (1, 1) and len(head.blocks) == 2
        assert not any("pos" in n for n, _ in head.named_parameters())  # no positional embedding
        x = torch.randn(3, 12, size, size)
        assert head(x).shape == (3, 5)
        inner = head.proj(head.norm(torch.nn.functional.adaptive_avg_pool2d(x, min(size, 16))))
        assert inner.flatten(2).shape[-1] == tokens
    # the block is the official pre-norm ViT block: softmax(q kᵀ / √d) v with qkv without bias
    blk = ViTBlock(16, 4)
    assert blk.qkv.bias is None
    t = torch.randn(2, 5, 16)
    q, k, v = blk.qkv(blk.norm1(t)).reshape(2, 5, 3, 4, 4).permute(2, 0, 3, 1, 4)
    att = torch.softmax(q @ k.transpose(-2, -1) / 2.0, dim=-1) @ v
    mid = t + blk.proj(att.transpose(1, 2).reshape(2, 5, 16))
    torch.testing.assert_close(blk(t), mid + blk.mlp(blk.norm2(mid)), rtol=1e-5, atol=1e-5)
    # a tiny training step lowers the loss on a fixed batch
    head = OfficialAttentionHead(12, (8, 8), 5, dim=32, heads=8, layers=2)
    x, y = torch.randn(10, 12, 8, 8), torch.arange(10) % 5
    opt = torch.optim.SGD(head.parameters(), lr=5e-2)
    losses = []
    for _ in range(5):
        loss = torch.nn.functional.cross_entropy(head(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] and head.cls_token.grad is not None


def test_heads_are_built_by_name() -> None:
    from methods.diffusion_cls.heads import AttentionHead, OfficialAttentionHead

    shape = (16, 4, 4)
    official, _ = DiffusionCls(head="attention", attention_dim=32).head(shape, 10)
    ours, _ = DiffusionCls(head="attention_pos", attention_dim=32, attention_heads=4).head(shape, 10)
    assert isinstance(official, OfficialAttentionHead) and isinstance(ours, AttentionHead)
    x = torch.randn(2, *shape)
    assert official(x).shape == ours(x).shape == (2, 10)
