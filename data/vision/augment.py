"""Batched image augmentations on tensors, on whatever device the batch is on, seeded by a generator.

Two recipes. ``small`` for the 8×8 / 28×28 grey offline sets (SBCL spec, small scale): random
integer pixel shifts, Gaussian noise and pixel dropout. ``cifar``: the SupCon/SBCL CIFAR recipe —
RandomResizedCrop(scale 0.2–1), horizontal flip, colour jitter (hue included) with p 0.8 and grayscale
with p 0.2 — written as one affine ``grid_sample`` per batch so no python loop runs over images.
``crop_flip`` is the stage-2 view (RandomCrop with zero padding, flip). Normalisation is not here: the
encoder's input layer does it (methods.sbcl.module), so clean, augmented and test images all get it.
"""

from __future__ import annotations

from dataclasses import dataclass

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


LUMA = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale weights (ITU-R 601-2)


def _grey(x: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) luma of an RGB batch; a grey batch is its own."""
    if x.shape[1] != 3:
        return x.mean(dim=1, keepdim=True)
    w = torch.tensor(LUMA, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True)


def shift_hue(x: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """Rotate the hue of each RGB image by ``delta`` (N,) turns (HSV, h ← (h + δ) mod 1), as
    torchvision's ``adjust_hue``; grey images are returned unchanged."""
    if x.shape[1] != 3:
        return x
    r, g, b = x.unbind(dim=1)
    maxc, _ = x.max(dim=1)
    minc, _ = x.min(dim=1)
    v, span = maxc, maxc - minc
    s = span / torch.where(maxc > 0, maxc, torch.ones_like(maxc))
    safe = torch.where(span > 0, span, torch.ones_like(span))
    rc, gc, bc = (maxc - r) / safe, (maxc - g) / safe, (maxc - b) / safe
    h = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = torch.where(span > 0, (h / 6.0) % 1.0, torch.zeros_like(h))
    h = (h + delta.view(-1, 1, 1)) % 1.0
    i = torch.floor(h * 6.0)
    f = h * 6.0 - i
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    i = i.long() % 6
    sectors = [i == k for k in range(6)]

    def pick(*values: torch.Tensor) -> torch.Tensor:  # the channel's value in each hue sector
        return sum(torch.where(m, val, torch.zeros_like(val)) for m, val in zip(sectors, values, strict=True))

    return torch.stack([pick(v, q, p, p, t, v), pick(t, v, v, q, p, p), pick(p, p, t, v, v, q)], dim=1)


def brightness(y: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Each image (N, C, H, W) times its factor (N,), clamped to [0, 1]."""
    return (y * factor.view(-1, 1, 1, 1)).clamp(0, 1)


def contrast(y: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Each image blended with its mean luma by its factor (N,), clamped."""
    mean = _grey(y).mean(dim=(2, 3), keepdim=True)
    return ((y - mean) * factor.view(-1, 1, 1, 1) + mean).clamp(0, 1)


def saturation(y: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Each image blended with its own grey image by its factor (N,), clamped."""
    grey = _grey(y)
    return ((y - grey) * factor.view(-1, 1, 1, 1) + grey).clamp(0, 1)


JITTER_OPS = (brightness, contrast, saturation, shift_hue)  # ColorJitter's four, indexed as `order` is


@dataclass
class JitterDraw:
    """Every random choice of ``colour`` for a batch of n images, drawn up front."""

    on: torch.Tensor  # (n,) bool: this image is jittered (RandomApply, p = jitter_p)
    factors: tuple[torch.Tensor, ...]  # per op (n,): brightness, contrast, saturation factor; hue shift
    order: torch.Tensor  # (n, 4): the op applied in each of the four slots
    to_grey: torch.Tensor  # (n,) bool: RandomGrayscale


def draw_jitter(n: int, cfg: AugmentConfig, g: torch.Generator, device: torch.device) -> JitterDraw:
    s = cfg.jitter_strength
    on = _rand(n, g, device) < cfg.jitter_p
    bright, contrast_, sat = (1 + s * (2 * _rand(n, g, device) - 1) for _ in range(3))
    hue = cfg.jitter_hue * (2 * _rand(n, g, device) - 1)
    order = torch.argsort(torch.rand(n, 4, generator=g), dim=1).to(device)  # a random op order per image
    to_grey = _rand(n, g, device) < cfg.grayscale_p
    return JitterDraw(on, (bright, contrast_, sat, hue), order, to_grey)


def colour(x: torch.Tensor, cfg: AugmentConfig, g: torch.Generator) -> torch.Tensor:
    """``RandomApply([ColorJitter(s, s, s, hue)], p=jitter_p)`` then ``RandomGrayscale(grayscale_p)``, as the
    official SBCL CIFAR transform (SimCLR/main.py: ColorJitter(0.4, 0.4, 0.4, 0.1)): brightness, contrast,
    saturation factors uniform in [1 − s, 1 + s], hue shift uniform in [−hue, hue], applied in a random
    order per image (torchvision draws the order per call), each result clamped to [0, 1].

    Each op runs only on the images that take it in that slot (sorted into groups once per slot), so a
    batch costs four op applications per jittered image, not sixteen per image."""
    n = x.shape[0]
    draw = draw_jitter(n, cfg, g, x.device)
    ops = JITTER_OPS if cfg.jitter_hue > 0 else (*JITTER_OPS[:3], lambda y, _: y)
    jittered = draw.on.nonzero().squeeze(1)
    y = x[jittered]
    factors = [f[jittered] for f in draw.factors]
    order = draw.order[jittered]
    for slot in range(4):
        which = order[:, slot]
        groups = torch.argsort(which, stable=True).split(torch.bincount(which, minlength=4).tolist())
        out = torch.empty_like(y)
        for op, factor, rows in zip(ops, factors, groups, strict=True):
            if len(rows):
                out[rows] = op(y[rows], factor[rows])
        y = out
    x = x.index_put((jittered,), y)
    return torch.where(draw.to_grey.view(n, 1, 1, 1), _grey(x).expand_as(x), x)


def crop_flip(x: torch.Tensor, pad: int, g: torch.Generator) -> torch.Tensor:
    """``RandomCrop(H, padding=pad)`` (zero fill) plus ``RandomHorizontalFlip``: the official stage-2
    transform (SimCLR/linear_classify.py)."""
    x = shift(x, pad, g)
    flip = (_rand(x.shape[0], g, x.device) < 0.5).view(-1, 1, 1, 1)
    return torch.where(flip, x.flip(3), x)


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


class Normalize(torch.nn.Module):
    """Per-channel (x − mean) / std as a layer (``transforms.Normalize`` after ``ToTensor``), put in front of
    an encoder so that every image it sees, augmented or clean, is normalised the same way."""

    def __init__(self, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std
