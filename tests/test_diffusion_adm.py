"""guided-diffusion ADM checkpoints (the paper's model) through the converter into diffusers (adm.py).

A tiny ADM-format checkpoint — a plain state_dict with guided_diffusion.unet.UNetModel's key names and
shapes (tests/paper/standins.py tiny_adm_state_dict) — is written, and its forward pass is recomputed
straight from that state_dict with ADM's arithmetic (ResBlock with scale-shift norm and up/down
resampling, QKVAttentionLegacy, the [cos, sin] timestep embedding), independently of the converter: the
converted UNet2DModel must give the same output and the same activation at every one of the paper's
block numbers.
"""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from methods.diffusion_cls.adm import channel_mult, convert_state_dict, diffusers_config, load_adm
from methods.diffusion_cls.config import ADMConfig
from methods.diffusion_cls.features import paper_blocks, run_to_blocks
from tests.paper.standins import tiny_adm_state_dict

TINY = {
    "image_size": 16,
    "num_channels": 32,
    "num_res_blocks": 1,
    "channel_mult": "1,2",
    "attention_resolutions": "8",  # downsampling factor 2: the second level holds attention
    "num_head_channels": 16,
}


def adm_forward(sd: dict, cfg: ADMConfig, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, list]:
    """guided_diffusion UNetModel.forward recomputed from its state_dict; also every block's output."""
    mc, nrb, mult = cfg.num_channels, cfg.num_res_blocks, channel_mult(cfg)
    attn_ds = {cfg.image_size // int(r) for r in cfg.attention_resolutions.split(",")}

    def gn(p: str, h: torch.Tensor) -> torch.Tensor:
        return F.group_norm(h, 32, sd[f"{p}.weight"], sd[f"{p}.bias"], eps=1e-5)

    def lin(p: str, h: torch.Tensor) -> torch.Tensor:
        return F.linear(h, sd[f"{p}.weight"], sd[f"{p}.bias"])

    def conv(p: str, h: torch.Tensor, stride: int = 1) -> torch.Tensor:
        w = sd[f"{p}.weight"]
        pad = w.shape[-1] // 2
        return F.conv2d(h, w, sd[f"{p}.bias"], stride=stride, padding=pad)

    def res(p: str, h: torch.Tensor, emb: torch.Tensor, up: bool = False, down: bool = False):
        x_in, h = h, F.silu(gn(f"{p}.in_layers.0", h))
        if up:
            h, x_in = F.interpolate(h, scale_factor=2, mode="nearest"), F.interpolate(x_in, scale_factor=2)
        if down:
            h, x_in = F.avg_pool2d(h, 2), F.avg_pool2d(x_in, 2)
        h = conv(f"{p}.in_layers.2", h)
        e = lin(f"{p}.emb_layers.1", F.silu(emb))[..., None, None]
        if cfg.use_scale_shift_norm:
            scale, shift = e.chunk(2, dim=1)
            h = gn(f"{p}.out_layers.0", h) * (1 + scale) + shift
        else:
            h = gn(f"{p}.out_layers.0", h + e)
        h = conv(f"{p}.out_layers.3", F.silu(h))
        skip = conv(f"{p}.skip_connection", x_in) if f"{p}.skip_connection.weight" in sd else x_in
        return skip + h

    def attn(p: str, h: torch.Tensor) -> torch.Tensor:
        b, c, hh, ww = h.shape
        xs = h.reshape(b, c, -1)
        qkv = F.conv1d(gn(f"{p}.norm", xs), sd[f"{p}.qkv.weight"], sd[f"{p}.qkv.bias"])
        hc = cfg.num_head_channels
        q, k, v = qkv.reshape(b * c // hc, 3 * hc, -1).split(hc, dim=1)  # QKVAttentionLegacy
        scale = 1 / math.sqrt(math.sqrt(hc))
        w = torch.softmax(torch.einsum("bct,bcs->bts", q * scale, k * scale), dim=-1)
        a = torch.einsum("bts,bcs->bct", w, v).reshape(b, c, -1)
        out = xs + F.conv1d(a, sd[f"{p}.proj_out.weight"], sd[f"{p}.proj_out.bias"])
        return out.reshape(b, c, hh, ww)

    half = mc // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # timestep_embedding()
    emb = lin("time_embed.2", F.silu(lin("time_embed.0", emb)))
    h = conv("input_blocks.0.0", x)
    hs, blocks, k, ds = [h], [h], 1, 1
    for level in range(len(mult)):
        for _ in range(nrb):
            h = res(f"input_blocks.{k}.0", h, emb)
            if ds in attn_ds:
                h = attn(f"input_blocks.{k}.1", h)
            hs.append(h), blocks.append(h)
            k += 1
        if level != len(mult) - 1:
            p = f"input_blocks.{k}.0"
            h = res(p, h, emb, down=True) if cfg.resblock_updown else conv(f"{p}.op", h, stride=2)
            hs.append(h), blocks.append(h)
            k, ds = k + 1, ds * 2
    h = res("middle_block.2", attn("middle_block.1", res("middle_block.0", h, emb)), emb)
    blocks.append(h)
    k = 0
    for level in reversed(range(len(mult))):
        for i in range(nrb + 1):
            h = res(f"output_blocks.{k}.0", torch.cat([h, hs.pop()], dim=1), emb)
            idx = 1
            if ds in attn_ds:
                h, idx = attn(f"output_blocks.{k}.1", h), 2
            if level and i == nrb:
                p = f"output_blocks.{k}.{idx}"
                if cfg.resblock_updown:
                    h = res(p, h, emb, up=True)
                else:
                    h = conv(f"{p}.conv", F.interpolate(h, scale_factor=2, mode="nearest"))
                ds //= 2
            blocks.append(h)
            k += 1
    return conv("out.2", F.silu(gn("out.0", h))), blocks


@pytest.mark.parametrize("updown_scale_shift", [True, False])
def test_converted_adm_matches_adm_arithmetic_at_every_paper_block(updown_scale_shift: bool) -> None:
    from diffusers import UNet2DModel

    flags = {**TINY, "resblock_updown": updown_scale_shift, "use_scale_shift_norm": updown_scale_shift}
    cfg = ADMConfig(**flags)
    sd = tiny_adm_state_dict(cfg)
    unet = UNet2DModel(**diffusers_config(cfg)).eval()
    unet.load_state_dict(convert_state_dict(sd, cfg), strict=True)  # every tensor mapped, none missing
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([10, 150])
    with torch.no_grad():
        ref_out, ref_blocks = adm_forward(sd, cfg, x, t)
        out = unet(x, t).sample
        names = list(paper_blocks(unet))
        got = run_to_blocks(unet, x, t, names)
    torch.testing.assert_close(out, ref_out, rtol=1e-4, atol=1e-4)
    # input 1-4 (conv, res, down, res+attn), middle 5, output 6-9: ADM's numbering
    assert names == [str(b) for b in range(1, len(ref_blocks) + 1)] and len(names) == 9
    for b, ref in enumerate(ref_blocks, start=1):
        # random weights grow activations to hundreds: float32 agreement relative to the block's scale
        atol = 1e-5 * float(ref.abs().max())
        torch.testing.assert_close(got[str(b)], ref, rtol=1e-5, atol=atol, msg=f"block {b}")


def test_adm_checkpoint_loads_as_a_unet_source(tmp_path: Path) -> None:
    from methods.diffusion_cls.method import DiffusionCls

    cfg = ADMConfig(**TINY)
    path = tmp_path / "tiny_adm_uncond.pt"
    torch.save(tiny_adm_state_dict(cfg, seed=3), path)  # a plain state_dict, as guided-diffusion's .pt
    ctx = SimpleNamespace(seed=0, cfg=None)
    adm = {**TINY, "checkpoint": str(path)}
    unet, ckpt, spec = DiffusionCls(unet_source="adm", adm=adm, block="7").unet(ctx, None, "d")
    assert ckpt.startswith("adm-tiny_adm_uncond-") and spec == {"sample_size": 16, "in_channels": 3}
    assert unet.config.num_train_timesteps == 1000
    # its random-U-Net baseline: the same ADM architecture, untrained
    rnd, rckpt, _ = DiffusionCls(unet_source="adm", adm=adm, features="random_unet").unet(ctx, None, "d")
    arch = {k: v for k, v in dict(unet.config).items() if not k.startswith("_")}
    assert rckpt.startswith("random-0-")
    assert {k: v for k, v in dict(rnd.config).items() if not k.startswith("_")} == arch
    assert not torch.allclose(rnd.conv_in.weight, unet.conv_in.weight)
    with pytest.raises(ValueError, match=r"needs method\.adm\.checkpoint"):
        load_adm(ADMConfig(**TINY))


def test_the_papers_adm_has_37_blocks_and_block_24_is_1024ch_at_16x16() -> None:
    from diffusers import UNet2DModel

    cfg = ADMConfig()  # the paper's flags: 256x256 uncond, scripts/linear.sh
    with torch.device("meta"):
        unet = UNet2DModel(**diffusers_config(cfg))
        x, t = torch.empty(1, 3, 256, 256), torch.zeros(1, dtype=torch.long)
        blocks = paper_blocks(unet)
        assert len(blocks) == 37  # input 1-18, middle 19, output 20-37
        got = run_to_blocks(unet, x, t, ["18", "19", "24"])
    assert tuple(got["24"].shape) == (1, 1024, 16, 16)  # output block 5: the paper's best
    assert tuple(got["19"].shape) == (1, 1024, 8, 8)


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["cached", "official"])
def test_run_py_probes_an_adm_checkpoint_with_the_official_head(compose, tmp_path: Path, protocol) -> None:
    """run.py with an ADM-format checkpoint (its path where the paper's .pt goes), the paper's block
    numbering and the official attention head, through both probe protocols."""
    import json

    from runners.execute import execute

    path = tmp_path / "tiny_adm_uncond.pt"
    torch.save(tiny_adm_state_dict(ADMConfig(**TINY), seed=5), path)
    args = [
        "method=diffusion_cls",
        "scale=smoke",
        "logger=none",
        f"method.ddpm.cache_dir={tmp_path / 'cache'}",
        "method.unet_source=adm",
        f"method.adm.checkpoint={path}",
        "method.adm.image_size=16",
        "method.adm.num_channels=32",
        "method.adm.num_res_blocks=1",
        "method.adm.channel_mult='1,2'",
        "method.adm.attention_resolutions='8'",
        "method.adm.num_head_channels=16",
        "method.block=7",  # output block 2: the first decoder level's upsampled output, 64 ch at 16×16
        "method.t=150",
        "method.head=attention",
        "method.attention_dim=32",
        f"method.probe_protocol={protocol}",
        "method.shots=3",
    ]
    execute(compose(args), out_dir=tmp_path / "run")
    record = json.loads((tmp_path / "run" / "results.json").read_text())
    assert record["status"] == "completed" and 0.0 <= record["metrics"]["test_acc"] <= 1.0
