"""guided-diffusion's ADM U-Net checkpoints (the paper's model) converted into a diffusers UNet2DModel.

The paper uses openai/guided-diffusion's 256×256 unconditional ImageNet checkpoint
(``256x256_diffusion_uncond.pt``, a plain ``state_dict`` of ``guided_diffusion.unet.UNetModel``, published
at ``PAPER_CHECKPOINT``, the URL of guided-diffusion's README that diffssl's README points to), built by
``script_util.create_model`` from the flags in diffssl's scripts/linear.sh (``ADMConfig`` defaults).
Every ADM piece has a diffusers counterpart with the same arithmetic — ResBlock → ResnetBlock2D
(scale-shift norm: ``time_embedding_norm="scale_shift"``; up/down ResBlocks: ``up=True`` / ``down=True``),
AttentionBlock (QKVAttentionLegacy) → Attention with its fused qkv split per head, the sinusoidal
embedding [cos, sin] → ``flip_sin_to_cos=True, freq_shift=0`` — so conversion only renames and splits
tensors. The paper's 1-based block numbers (input 1–18, middle 19, output 20–37 at 256×256) are then
``features.paper_blocks`` of the converted model: ``method.block=24`` is output block 5.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

from methods.diffusion_cls.config import ADMConfig

PAPER_CHECKPOINT = "https://openaipublic.blob.core.windows.net/diffusion/jul-2021/256x256_diffusion_uncond.pt"


def checkpoint_file(cfg: ADMConfig, cache: Path) -> Path:
    """The local file of ``cfg.checkpoint``: a path as it is, or a URL downloaded once into
    ``cache``/adm/ (kept under its published name). Fails with the key in the message when neither works."""
    ref = cfg.checkpoint
    if not ref:
        raise ValueError(
            f"method.unet_source=adm needs method.adm.checkpoint (a guided-diffusion .pt: a path, or a URL "
            f"such as the paper's {PAPER_CHECKPOINT})"
        )
    if urlparse(ref).scheme not in ("http", "https"):
        path = Path(ref).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"method.adm.checkpoint={ref}: no such file")
        return path
    target = cache / "adm" / Path(urlparse(ref).path).name
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".{os.getpid()}.part")
    try:
        torch.hub.download_url_to_file(ref, str(tmp), progress=True)
    except Exception as ex:  # URLError, HTTPError, timeouts: no network, or the file moved
        tmp.unlink(missing_ok=True)
        raise ValueError(
            f"method.adm.checkpoint={ref}: download failed ({type(ex).__name__}: {ex}); download it where "
            f"there is network and give its path as method.adm.checkpoint (or put it at {target})"
        ) from None
    os.replace(tmp, target)
    return target


def channel_mult(cfg: ADMConfig) -> tuple[float, ...]:
    """guided_diffusion/script_util.py ``create_model``'s channel multipliers."""
    if cfg.channel_mult:
        return tuple(int(m) for m in cfg.channel_mult.split(","))
    defaults = {
        512: (0.5, 1, 1, 2, 2, 4, 4),
        256: (1, 1, 2, 2, 4, 4),
        128: (1, 1, 2, 3, 4),
        64: (1, 2, 3, 4),
    }
    if cfg.image_size not in defaults:
        raise ValueError(f"method.adm.image_size={cfg.image_size}: set method.adm.channel_mult")
    return defaults[cfg.image_size]


def attention_levels(cfg: ADMConfig) -> list[bool]:
    """Per resolution level: does it hold attention (its downsampling factor in attention_ds)?"""
    ds = {cfg.image_size // int(r) for r in cfg.attention_resolutions.split(",") if r}
    return [2**level in ds for level in range(len(channel_mult(cfg)))]


def diffusers_config(cfg: ADMConfig) -> dict[str, Any]:
    """The UNet2DModel config with ADM's architecture."""
    mult, attn = channel_mult(cfg), attention_levels(cfg)
    channels = [int(m * cfg.num_channels) for m in mult]
    if cfg.num_head_channels == -1:
        # ADM then fixes the head count; diffusers fixes the head width: equal only at one width.
        widths = {c // cfg.num_heads for c, a in zip(channels, attn, strict=True) if a} | {
            channels[-1] // cfg.num_heads
        }
        if len(widths) != 1:
            raise NotImplementedError("num_head_channels=-1 with attention at several widths")
        head_dim = widths.pop()
    else:
        head_dim = cfg.num_head_channels
    plain_down = "ResnetDownsampleBlock2D" if cfg.resblock_updown else "DownBlock2D"
    plain_up = "ResnetUpsampleBlock2D" if cfg.resblock_updown else "UpBlock2D"
    return {
        "sample_size": cfg.image_size,
        "in_channels": 3,
        "out_channels": 6 if cfg.learn_sigma else 3,
        "block_out_channels": tuple(channels),
        "layers_per_block": cfg.num_res_blocks,
        "down_block_types": tuple("AttnDownBlock2D" if a else plain_down for a in attn),
        "up_block_types": tuple("AttnUpBlock2D" if a else plain_up for a in reversed(attn)),
        "downsample_type": "resnet" if cfg.resblock_updown else "conv",
        "upsample_type": "resnet" if cfg.resblock_updown else "conv",
        "resnet_time_scale_shift": "scale_shift" if cfg.use_scale_shift_norm else "default",
        "attention_head_dim": head_dim,
        "norm_num_groups": 32,  # guided_diffusion/nn.py normalization(): GroupNorm32(32, channels)
        # the middle attention's norm too (diffusers drops it with scale_shift unless told)
        "attn_norm_num_groups": 32,
        "norm_eps": 1e-5,
        "flip_sin_to_cos": True,  # timestep_embedding(): cat([cos, sin])
        "freq_shift": 0,
        "num_train_timesteps": cfg.diffusion_steps,
    }


def module_pairs(cfg: ADMConfig) -> list[tuple[str, str, str]]:
    """(ADM prefix, diffusers prefix, kind) for every module, walking UNetModel.__init__'s layout."""
    mult, attn, nrb = channel_mult(cfg), attention_levels(cfg), cfg.num_res_blocks
    down = "res" if cfg.resblock_updown else "down_conv"
    up = "res" if cfg.resblock_updown else "up_conv"
    pairs = [
        ("time_embed.0", "time_embedding.linear_1", "same"),
        ("time_embed.2", "time_embedding.linear_2", "same"),
    ]
    pairs.append(("input_blocks.0.0", "conv_in", "same"))
    k = 1
    for level in range(len(mult)):
        for j in range(nrb):
            pairs.append((f"input_blocks.{k}.0", f"down_blocks.{level}.resnets.{j}", "res"))
            if attn[level]:
                pairs.append((f"input_blocks.{k}.1", f"down_blocks.{level}.attentions.{j}", "attn"))
            k += 1
        if level != len(mult) - 1:
            pairs.append((f"input_blocks.{k}.0", f"down_blocks.{level}.downsamplers.0", down))
            k += 1
    pairs += [
        ("middle_block.0", "mid_block.resnets.0", "res"),
        ("middle_block.1", "mid_block.attentions.0", "attn"),
        ("middle_block.2", "mid_block.resnets.1", "res"),
    ]
    k = 0
    for u, level in enumerate(reversed(range(len(mult)))):
        for i in range(nrb + 1):
            pairs.append((f"output_blocks.{k}.0", f"up_blocks.{u}.resnets.{i}", "res"))
            m = 1
            if attn[level]:
                pairs.append((f"output_blocks.{k}.1", f"up_blocks.{u}.attentions.{i}", "attn"))
                m = 2
            if level and i == nrb:
                pairs.append((f"output_blocks.{k}.{m}", f"up_blocks.{u}.upsamplers.0", up))
            k += 1
    pairs += [("out.0", "conv_norm_out", "same"), ("out.2", "conv_out", "same")]
    return pairs


_RES = {
    "in_layers.0": "norm1",
    "in_layers.2": "conv1",
    "emb_layers.1": "time_emb_proj",
    "out_layers.0": "norm2",
    "out_layers.3": "conv2",
    "skip_connection": "conv_shortcut",
}
_SUB = {"res": _RES, "down_conv": {"op": "conv"}, "up_conv": {"conv": "conv"}, "same": {"": ""}}


def _attention(sd: dict, p: str, q: str, channels_per_head: int) -> dict[str, torch.Tensor]:
    """AttentionBlock → diffusers Attention. QKVAttentionLegacy splits the fused qkv per head: its 3C
    output rows are laid out (head, q|k|v, channel); its scale 1/√√d on q and on k is diffusers' 1/√d."""
    w, b = sd[f"{p}.qkv.weight"][..., 0], sd[f"{p}.qkv.bias"]
    c = w.shape[1]
    heads = c // channels_per_head
    w = w.reshape(heads, 3, channels_per_head, c)
    b = b.reshape(heads, 3, channels_per_head)
    out = {f"{q}.group_norm.{n}": sd[f"{p}.norm.{n}"] for n in ("weight", "bias")}
    for i, name in enumerate(("to_q", "to_k", "to_v")):
        out[f"{q}.{name}.weight"] = w[:, i].reshape(c, c)
        out[f"{q}.{name}.bias"] = b[:, i].reshape(c)
    out[f"{q}.to_out.0.weight"] = sd[f"{p}.proj_out.weight"][..., 0]
    out[f"{q}.to_out.0.bias"] = sd[f"{p}.proj_out.bias"]
    return out


def convert_state_dict(sd: dict[str, torch.Tensor], cfg: ADMConfig) -> dict[str, torch.Tensor]:
    """ADM state_dict → UNet2DModel state_dict; every ADM tensor is used exactly once."""
    head_dim = diffusers_config(cfg)["attention_head_dim"]
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for p, q, kind in module_pairs(cfg):
        if kind == "attn":
            out.update(_attention(sd, p, q, head_dim))
            used.update(k for k in sd if k.startswith(p + "."))
            continue
        for key in [k for k in sd if k.startswith(p + ".")]:
            rest = key[len(p) + 1 :]
            sub, _, leaf = rest.rpartition(".")
            target = _SUB[kind].get(sub)
            if target is None:
                raise KeyError(f"ADM key {key!r} has no diffusers counterpart")
            out[f"{q}.{target}.{leaf}" if target else f"{q}.{leaf}"] = sd[key]
            used.add(key)
    left = sorted(set(sd) - used)
    if left:
        raise KeyError(f"ADM checkpoint keys not converted (other flags?): {left[:5]}")
    return out


def load_adm(cfg: ADMConfig, cache: Path | None = None) -> tuple[Any, str]:
    """(UNet2DModel in eval mode, checkpoint id) from an ADM .pt checkpoint (path or URL) and its flags."""
    from diffusers import UNet2DModel

    from data.cache import cache_dir

    path = checkpoint_file(cfg, cache if cache is not None else cache_dir("diffusion_cls"))
    sd = torch.load(path, map_location="cpu", weights_only=True)
    unet = UNet2DModel(**diffusers_config(cfg))
    unet.load_state_dict({k: v.float() for k, v in convert_state_dict(sd, cfg).items()}, strict=True)
    stat = path.stat()
    ident = hashlib.sha1(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    return unet.eval(), f"adm-{path.stem}-{ident}"
