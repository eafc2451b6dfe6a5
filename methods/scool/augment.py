"""The official SCooL training transform on batches of every device at once, and its normalisation.

util.py (partition_non_iid_random_dataset, cifar10_tiny): RandomCrop(32, padding=4, fill=128), then
RandomHorizontalFlip, ColorJitter(saturation=0.9), ToTensor, Normalize(mean, std); the test transform is
ToTensor + Normalize. Here on float images in [0, 1], with the randomness drawn from a CPU generator so
that a resumed run draws what an uninterrupted one does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# util.py's Normalize constants.
STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "cifar100": ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)),
}


def channel_stats(name: str, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std) per channel: util.py's for CIFAR-10/100, else the training images' own."""
    if name in STATS and images.shape[1] == 3:
        mean, std = STATS[name]
        return torch.tensor(mean), torch.tensor(std)
    from data.features import channel_stats as own_stats

    return own_stats(images)


def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """(x − mean) / std over the channel axis of (..., C, H, W)."""
    shape = (-1, 1, 1)
    return (x - mean.to(x.device).view(shape)) / std.to(x.device).view(shape)


def augment(
    x: torch.Tensor,
    gen: torch.Generator,
    pad: int = 4,
    fill: float = 128 / 255,
    saturation: float = 0.9,
    of: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Random crop of the `pad`-padded image (padding `fill`), horizontal flip with probability 1/2 and,
    for RGB, a saturation factor drawn from U[max(0, 1 − s), 1 + s], each image on its own: (..., C, H, W).
    `of` = (total, start): x is images start.. of a batch of `total` (one rank's devices, methods/scool/
    shard.py); the draws are made for all `total`, so each image gets what it gets in one process."""
    shape = x.shape
    x = x.reshape(-1, *shape[-3:])
    n, c, h, w = x.shape
    total, start = of or (n, 0)
    dy = torch.randint(0, 2 * pad + 1, (total,), generator=gen)[start : start + n]
    dx = torch.randint(0, 2 * pad + 1, (total,), generator=gen)[start : start + n]
    flip = (torch.rand(total, generator=gen) < 0.5)[start : start + n]
    factor = torch.empty(total).uniform_(max(0.0, 1 - saturation), 1 + saturation, generator=gen)
    factor = factor[start : start + n]
    rows = (dy[:, None] + torch.arange(h)).to(x.device)
    cols = dx[:, None] + torch.arange(w)
    cols = torch.where(flip[:, None], cols.flip(1), cols).to(x.device)
    padded = F.pad(x, (pad, pad, pad, pad), value=fill)
    out = padded[
        torch.arange(n, device=x.device)[:, None, None, None],
        torch.arange(c, device=x.device)[None, :, None, None],
        rows[:, None, :, None],
        cols[:, None, None, :],
    ]
    if c == 3:  # torchvision's adjust_saturation: blend with the ITU-R 601-2 grey image, clamp to [0, 1]
        grey = (0.299 * out[:, 0] + 0.587 * out[:, 1] + 0.114 * out[:, 2])[:, None]
        f = factor.to(x.device)[:, None, None, None]
        out = (f * out + (1 - f) * grey).clamp(0, 1)
    return out.reshape(shape)
