"""Activations of any U-Net block at any timestep, via forward hooks, pooled and cached on disk.

x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε (the DDPM forward process, paper §3), one U-Net pass at t, the output of the
hooked block, AdaptiveAvgPool2d(pooling). ε is fixed by ``noise_seed``: it is drawn in fixed chunks of
CHUNK images, each from its own generator, so the features do not depend on the extraction batch size.
One pass stores every block of that timestep; the cache key is (checkpoint, block, t, pooling, noise
seed, image set), so a second probe sweep reads features instead of running the U-Net.
"""

from __future__ import annotations

import hashlib
import json
import os
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


def noise_for(start: int, shape: tuple[int, ...], noise_seed: int) -> torch.Tensor:
    """ε for images [start, start + shape[0]); start is a multiple of CHUNK."""
    g = torch.Generator().manual_seed(noise_seed * 1_000_003 + start // CHUNK)
    return torch.randn(shape, generator=g)


@torch.no_grad()
def extract_all_blocks(
    unet: Any, x0: torch.Tensor, t: int, pooling: int, noise_seed: int, device: str = "cpu"
) -> dict[str, torch.Tensor]:
    """Pooled activations (N, C, p, p) of every block for images x0 already in model space [−1, 1]."""
    from diffusers import DDPMScheduler

    sched = DDPMScheduler(num_train_timesteps=unet.config.get("num_train_timesteps", 1000) or 1000)
    captured: dict[str, torch.Tensor] = {}
    hooks = [
        m.register_forward_hook(
            lambda _m, _i, out, name=name: captured.__setitem__(
                name, out[0] if isinstance(out, tuple) else out
            )
        )
        for name, m in block_modules(unet).items()
    ]
    unet.to(device).eval()
    outs: dict[str, list[torch.Tensor]] = {}
    try:
        for start in range(0, len(x0), CHUNK):
            batch = x0[start : start + CHUNK]
            eps = noise_for(start, tuple(batch.shape), noise_seed)
            steps = torch.full((len(batch),), t, dtype=torch.long)
            xt = sched.add_noise(batch, eps, steps)
            unet(xt.to(device), steps.to(device))
            for name, act in captured.items():
                outs.setdefault(name, []).append(F.adaptive_avg_pool2d(act.float(), pooling).cpu())
    finally:
        for h in hooks:
            h.remove()
    return {name: torch.cat(chunks) for name, chunks in outs.items()}


class FeatureCache:
    """Feature tensors on disk, one file per (checkpoint, block, t, pooling, noise seed, image set)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.hits = self.misses = 0

    def path(
        self, checkpoint: str, block: str, t: int, pooling: int, noise_seed: int, images_id: str
    ) -> Path:
        key = json.dumps([checkpoint, block, t, pooling, noise_seed, images_id])
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
    ) -> torch.Tensor:
        path = self.path(checkpoint, block, t, pooling, noise_seed, images_id)
        if path.exists():
            self.hits += 1
            return torch.load(path, weights_only=True)
        self.misses += 1
        feats = extract_all_blocks(unet, x0, t, pooling, noise_seed, device)
        if block not in feats:
            raise ValueError(f"method.block={block!r} is not a block of this U-Net: {', '.join(feats)}")
        for name, f in feats.items():
            target = self.path(checkpoint, name, t, pooling, noise_seed, images_id)
            tmp = target.with_suffix(f".{os.getpid()}.tmp")  # parallel sweep jobs may write the same file
            torch.save(f.contiguous(), tmp)
            os.replace(tmp, target)
        return feats[block]
