"""Batched image augmentations on tensors, on whatever device the batch is on, seeded by a generator.

Two recipes. ``small`` for the 8×8 / 28×28 grey offline sets (SBCL spec, small scale): random
integer pixel shifts, Gaussian noise and pixel dropout. ``cifar``: the SupCon/SBCL CIFAR recipe —
RandomResizedCrop(scale 0.2–1), horizontal flip, colour jitter with p 0.8 and grayscale with p 0.2 —
written as one affine ``grid_sample`` per batch so no python loop runs over images.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from data.vision.options import AUGMENT_KINDS, AugmentConfig

KINDS = AUGMENT_KINDS


def _rand(n: int, g: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(n, generator=g, device="cpu").to(device)


def shift(x: torch.Tensor, max_shift: int, g: torch.Generator) -> torch.Tensor:
    """Translate each image by an integer offset in [−max_shift, max_shift]² with zero fill."""
    if max_shift <= 0:
        return x
    n, _, h, w = x.shape
    pad = F.pad(x, (max_shift,) * 4)
    dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=g).to(x.device)
    dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=g).to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device)[None]).view(n, 1, h, 1)
    cols = (dx[:, None] + torch.arange(w, device=x.device)[None]).view(n, 1, 1, w)
    b = torch.arange(n, device=x.device).view(n, 1, 1, 1)
    c = torch.arange(x.shape[1], device=x.device).view(1, -1, 1, 1)
    return pad[b, c, rows, cols]


def resized_crop_flip(x: torch.Tensor, scale_min: float, g: torch.Generator) -> torch.Tensor:
    """RandomResizedCrop (area scale in [scale_min, 1], aspect ratio 3/4–4/3) plus a random h-flip."""
    n, device = x.shape[0], x.device
    area = scale_min + (1 - scale_min) * _rand(n, g, device)
    log_ratio = torch.log(torch.tensor(3 / 4)) + _rand(n, g, device) * torch.log(torch.tensor(16 / 9))
    ratio = torch.exp(log_ratio)
    sw = torch.sqrt(area * ratio).clamp(max=1.0)
    sh = torch.sqrt(area / ratio).clamp(max=1.0)
    cx = (2 * _rand(n, g, device) - 1) * (1 - sw)
    cy = (2 * _rand(n, g, device) - 1) * (1 - sh)
    flip = torch.where(_rand(n, g, device) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3, device=device)
    theta[:, 0, 0], theta[:, 0, 2] = sw * flip, cx
    theta[:, 1, 1], theta[:, 1, 2] = sh, cy
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def colour(x: torch.Tensor, cfg: AugmentConfig, g: torch.Generator) -> torch.Tensor:
    """Brightness / contrast / saturation jitter (p = jitter_p) and grayscale (p = grayscale_p)."""
    n, device, s = x.shape[0], x.device, cfg.jitter_strength
    on = (_rand(n, g, device) < cfg.jitter_p).view(n, 1, 1, 1)
    bright = 1 + s * (2 * _rand(n, g, device) - 1)
    contrast = 1 + s * (2 * _rand(n, g, device) - 1)
    sat = 1 + s * (2 * _rand(n, g, device) - 1)
    y = x * bright.view(n, 1, 1, 1)
    mean = y.mean(dim=(1, 2, 3), keepdim=True)
    y = (y - mean) * contrast.view(n, 1, 1, 1) + mean
    grey = y.mean(dim=1, keepdim=True)
    y = (y - grey) * sat.view(n, 1, 1, 1) + grey
    x = torch.where(on, y.clamp(0, 1), x)
    to_grey = (_rand(n, g, device) < cfg.grayscale_p).view(n, 1, 1, 1)
    return torch.where(to_grey, x.mean(dim=1, keepdim=True).expand_as(x), x)


def augment(x: torch.Tensor, cfg: AugmentConfig, g: torch.Generator) -> torch.Tensor:
    """One random view of every image in the batch (N, C, H, W) in [0, 1]."""
    if cfg.kind == "none":
        return x
    if cfg.kind == "small":
        x = shift(x, cfg.max_shift, g)
        if cfg.noise_std > 0:
            noise = torch.randn(x.shape, generator=g).to(x.device)
            x = x + cfg.noise_std * noise
        if cfg.dropout > 0:
            x = x * (torch.rand(x.shape, generator=g).to(x.device) >= cfg.dropout)
        return x
    if cfg.kind == "cifar":
        return colour(resized_crop_flip(x, cfg.crop_scale_min, g), cfg, g)
    raise ValueError(f"augment kind={cfg.kind!r} is not valid; choose one of: {', '.join(KINDS)}")
