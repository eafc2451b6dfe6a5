"""Activations of any U-Net block at any timestep, via forward hooks, pooled and cached on disk.

x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε (the DDPM forward process, paper §3), one U-Net pass at t, the output of the
hooked block, average-pooled to min(pooling, map size) — never upsampled, as the official
``AttentionFusion`` caps ``pre_pool_size`` at the feature size. ε is fixed by ``noise_seed``: it is drawn in
fixed chunks of CHUNK images, each from its own generator, so the features do not depend on the extraction
batch size. Only the cells a run asks for are stored — its (block, t), plus the blocks it names in
``also`` from the same pass — in float16 (upcast to float32 when read): pooling 16 on a CIFAR U-Net is
about 2 MB an image per block in float32. The cache key is (checkpoint, block, t, pooling, noise seed,
image set).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

CHUNK = 256


def block_modules(unet: Any) -> dict[str, torch.nn.Module]:
    """Hookable blocks by name: down.<i>, mid, up.<i> (encoder, bottleneck, decoder)."""
    blocks = {f"down.{i}": b for i, b in enumerate(unet.down_blocks)}
    blocks["mid"] = unet.mid_block
    blocks.update({f"up.{i}": b for i, b in enumerate(unet.up_blocks)})
    return blocks


def paper_blocks(unet: Any) -> dict[str, torch.nn.Module]:
    """The paper's 1-based block numbers ("1", "2", …): guided-diffusion's input_blocks, middle_block and
    output_blocks in forward order (diffssl get_multiple_features: block b is the b-th one's output).
    On a UNet2DModel each is the last module of that ADM block: conv_in; per encoder level its
    (resnet [, attention]) pairs then its downsampler; the mid block; per decoder level its
    (resnet [, attention]) pairs, the last one ending with the upsampler. For a converted ADM
    checkpoint (adm.py) these are exactly the paper's blocks, e.g. 24 = output block 5."""
    order: list[torch.nn.Module] = [unet.conv_in]
    for block in unet.down_blocks:
        attns = getattr(block, "attentions", None)
        order += [attns[j] if attns else r for j, r in enumerate(block.resnets)]
        if block.downsamplers:
            order.append(block.downsamplers[0])
    order.append(unet.mid_block)
    for block in unet.up_blocks:
        attns = getattr(block, "attentions", None)
        order += [attns[i] if attns else r for i, r in enumerate(block.resnets)]
        if block.upsamplers:
            order[-1] = block.upsamplers[0]  # the block's last piece: its output is upsampled
    return {str(i + 1): m for i, m in enumerate(order)}


def noise_for(start: int, shape: tuple[int, ...], noise_seed: int) -> torch.Tensor:
    """ε for images [start, start + shape[0]); start is a multiple of CHUNK."""
    g = torch.Generator().manual_seed(noise_seed * 1_000_003 + start // CHUNK)
    return torch.randn(shape, generator=g)


def pool(act: torch.Tensor, size: int) -> torch.Tensor:
    """Average-pool an (N, C, H, W) map to min(size, H) × min(size, W): a smaller map is kept as it is."""
    return F.adaptive_avg_pool2d(act, (min(size, act.shape[-2]), min(size, act.shape[-1])))


class _Done(Exception):
    """Raised by the last hook needed: the rest of the U-Net's forward pass would be wasted."""


def run_to_blocks(unet: Any, xt: torch.Tensor, steps: torch.Tensor, names: Iterable[str]) -> dict:
    """Raw activations of the named blocks for one U-Net pass on x_t, stopping after the last of them."""
    modules = {**block_modules(unet), **paper_blocks(unet)}
    wanted = list(dict.fromkeys(names))
    unknown = [n for n in wanted if n not in modules]
    if unknown:
        coarse = block_modules(unet)
        raise ValueError(
            f"method.block={unknown[0]!r} is not a block of this U-Net: {', '.join(coarse)}, "
            f"or 1-{len(modules) - len(coarse)}"
        )
    captured: dict[str, torch.Tensor] = {}

    def hook(_m: Any, _i: Any, out: Any, name: str) -> None:
        captured[name] = out[0] if isinstance(out, tuple) else out
        if len(captured) == len(wanted):
            raise _Done

    hooks = [modules[n].register_forward_hook(lambda m, i, o, name=n: hook(m, i, o, name)) for n in wanted]
    try:
        unet(xt, steps)
    except _Done:
        pass
    finally:
        for h in hooks:
            h.remove()
    return captured


def scheduler_for(unet: Any) -> Any:
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=unet.config.get("num_train_timesteps", 1000) or 1000)


@torch.no_grad()
def extract_all_blocks(
    unet: Any,
    x0: torch.Tensor,
    t: int,
    pooling: int,
    noise_seed: int,
    device: str = "cpu",
    blocks: Iterable[str] | None = None,
) -> dict[str, torch.Tensor]:
    """Pooled activations (N, C, p, p) of ``blocks`` (None: every block) for images x0 in model space
    [−1, 1]; float32 on the CPU."""
    sched = scheduler_for(unet)
    names = list(block_modules(unet)) if blocks is None else list(blocks)
    unet.to(device).eval()
    outs: dict[str, list[torch.Tensor]] = {}
    for start in range(0, len(x0), CHUNK):
        batch = x0[start : start + CHUNK]
        eps = noise_for(start, tuple(batch.shape), noise_seed)
        steps = torch.full((len(batch),), t, dtype=torch.long)
        xt = sched.add_noise(batch, eps, steps)
        for name, act in run_to_blocks(unet, xt.to(device), steps.to(device), names).items():
            outs.setdefault(name, []).append(pool(act.float(), pooling).cpu())
    return {name: torch.cat(outs[name]) for name in names}


def to_storage(f: torch.Tensor) -> torch.Tensor:
    """float16 for the disk, unless a value would overflow it (then float32 stays)."""
    h = f.half()
    return h if bool(torch.isfinite(h).all()) or not bool(torch.isfinite(f).all()) else f


class FeatureCache:
    """Feature tensors on disk (float16), one file per (checkpoint, block, t, pooling, noise seed, set)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.hits = self.misses = 0

    def path(
        self, checkpoint: str, block: str, t: int, pooling: int, noise_seed: int, images_id: str
    ) -> Path:
        # "fp16-cap": stored in half precision, pooled without upsampling (older files were neither).
        key = json.dumps([checkpoint, block, t, pooling, noise_seed, images_id, "fp16-cap"])
        return self.folder / f"{hashlib.sha1(key.encode()).hexdigest()[:20]}.pt"

    def get(
        self,
        unet: Any,
        checkpoint: str,
        x0: torch.Tensor,
        images_id: str,
        block: str,
        t: int,
        pooling: int,
        noise_seed: int,
        device: str = "cpu",
        also: Iterable[str] = (),
    ) -> torch.Tensor:
        """The (block, t) features, float32; on a miss, the same U-Net pass also stores ``also``'s blocks
        (a sweep over blocks at one t then runs the U-Net once, storing only the blocks it sweeps)."""
        path = self.path(checkpoint, block, t, pooling, noise_seed, images_id)
        if path.exists():
            self.hits += 1
            return torch.load(path, weights_only=True).float()
        self.misses += 1
        names = list(dict.fromkeys([block, *also]))
        feats = extract_all_blocks(unet, x0, t, pooling, noise_seed, device, blocks=names)
        for name, f in feats.items():
            target = self.path(checkpoint, name, t, pooling, noise_seed, images_id)
            tmp = target.with_suffix(f".{os.getpid()}.tmp")  # parallel sweep jobs may write the same file
            torch.save(to_storage(f).contiguous(), tmp)
            os.replace(tmp, target)
        return to_storage(feats[block]).float()  # what a later hit reads: cold and warm runs agree
