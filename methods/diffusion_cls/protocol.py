"""The official probe protocol (soumik-kanad/diffssl ``finetune.py``): features made at every forward.

While the head trains, each batch is randomly cropped and flipped (guided_diffusion/image_datasets.py,
``random_crop_arr`` with ``min_crop_frac=0.8`` and ``random_flip``), noised with fresh ε
(``DiffSSLModelFeedbackFusion.forward``: ``noise = torch.randn_like(x_start)`` then ``q_sample``), passed
through the frozen U-Net up to the probed block and pooled. At evaluation there is no augmentation and ε is
drawn from a generator fixed by (noise_seed, batch), so a test score does not depend on what ran before
(the official draws it from the global RNG). The ``cached`` protocol instead stores one fixed-noise
pass per image (features.py): what makes the small block × timestep sweep fast.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from methods.diffusion_cls.ddpm import to_model_space
from methods.diffusion_cls.features import pool, run_to_blocks, scheduler_for


def crop_flip(x: torch.Tensor, size: int, min_frac: float, g: torch.Generator) -> torch.Tensor:
    """Official ``random_crop_arr`` + ``random_flip`` on a batch of square images, output size × size.

    The official resizes the smaller side to s, an integer drawn uniformly from [⌈size⌉, ⌈size /
    min_frac⌉], and crops size × size at a random offset: a square window of side size / s of the image.
    Here that window is sampled from the image at its own resolution in one bilinear ``grid_sample``, and
    its offset is continuous rather than whole pixels of the resized image."""
    n, device = len(x), x.device
    lo, hi = math.ceil(size), math.ceil(size / min_frac)
    s = torch.randint(lo, hi + 1, (n,), generator=g).float()
    frac = size / s
    offset = (2 * torch.rand(n, 2, generator=g) - 1) * (1 - frac)[:, None]
    flip = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = frac * flip, offset[:, 0]
    theta[:, 1, 1], theta[:, 1, 2] = frac, offset[:, 1]
    grid = F.affine_grid(theta.to(device), [n, x.shape[1], size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class OnlineFeatures:
    """Frozen U-Net → block ``block`` at timestep ``t`` → pooled, for a batch of [0, 1] images.

    Not an nn.Module on purpose: the probe's checkpoints then hold the head only (the official saves
    ``model.module.head.state_dict()``), and Lightning's ``train()`` never reaches the U-Net, which
    stays in eval mode (no dropout) as a frozen feature extractor."""

    def __init__(self, unet: Any, spec: dict, block: str, t: int, pooling: int, crop_min: float) -> None:
        self.unet = unet.eval().requires_grad_(False)
        self.size, self.channels = int(spec["sample_size"]), int(spec["in_channels"])
        self.block, self.t, self.pooling, self.crop_min = block, t, pooling, crop_min
        self.sched = scheduler_for(unet)
        self.device: torch.device | None = None

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, g: torch.Generator, augment: bool) -> torch.Tensor:
        if self.device != images.device:
            self.unet.to(images.device)
            self.device = images.device
        x = images.float()
        if augment:
            x = to_model_space(crop_flip(x, self.size, self.crop_min, g), self.size, self.channels)
        else:
            x = to_model_space(x, self.size, self.channels)
        eps = torch.randn(x.shape, generator=g).to(x.device)
        steps = torch.full((len(x),), self.t, dtype=torch.long, device=x.device)
        xt = self.sched.add_noise(x, eps, steps)
        act = run_to_blocks(self.unet, xt, steps, [self.block])[self.block]
        return pool(act.float(), self.pooling)
