"""Fixed feature extractors for methods that learn on frozen features (CHAIN's linear model, probes).

Offline there is no pretrained vision backbone (OFFLINE.md), so the offline default is the standardised
pixels; ``hub`` is the pooled output of a published backbone loaded with transformers' ``from_pretrained``
(a hub id, online users only, or a local folder in the same layout).
"""

from __future__ import annotations

import torch

FEATURES = ("pixels", "hub")


def standardize(
    train: torch.Tensor, *others: torch.Tensor, abs_floor: float = 0.0, rel_floor: float = 0.0
) -> list[torch.Tensor]:
    """Flattened per-dimension z-scores with the training set's statistics only; each std is floored at
    ``abs_floor + rel_floor × mean std`` so near-constant dimensions do not blow up."""
    flat = [x.reshape(len(x), -1) for x in (train, *others)]
    mean, std = flat[0].mean(0), flat[0].std(0)
    std = std.clamp(min=rel_floor * float(std.mean()) + abs_floor)
    return [(x - mean) / std for x in flat]


def pixel_features(train: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    """Flattened images standardised per dimension with the training pool's mean and std."""
    return standardize(train, *others, abs_floor=1e-3)


def channel_stats(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of (N, C, H, W) images: the encoder's input normalisation."""
    return images.mean(dim=(0, 2, 3)), images.std(dim=(0, 2, 3)).clamp_min(1e-6)


@torch.no_grad()
def encode(
    encoder: torch.nn.Module, images: torch.Tensor, batch_size: int = 256, desc: str = ""
) -> torch.Tensor:
    """``encoder`` (eval mode) over ``images`` in batches on the encoder's device, with a progress bar."""
    from tqdm import tqdm

    device = next(encoder.parameters()).device
    was_training = encoder.training
    encoder.eval()
    chunks = images.split(batch_size)
    out = [encoder(c.to(device)) for c in tqdm(chunks, desc=desc or "features", disable=len(chunks) < 4)]
    encoder.train(was_training)
    return torch.cat(out)


def pretrained_features(
    name: str, train: torch.Tensor, *others: torch.Tensor, batch_size: int = 256, device: str = "cpu"
) -> list[torch.Tensor]:
    """Pooled features of a published backbone (``from_pretrained(name)``: hub id or local folder), with its
    input normalised by the training pool's channel statistics (data.vision.encoders.pretrained_encoder)."""
    from data.vision.encoders import pretrained_encoder

    encoder = pretrained_encoder(name, *channel_stats(train)).to(device)
    return [encode(encoder, x, batch_size, f"{name} features") for x in (train, *others)]


def extract(
    kind: str, train: torch.Tensor, *others: torch.Tensor, name: str | None = None, **kw: object
) -> list[torch.Tensor]:
    """Features of ``train`` and ``others`` (same extractor; statistics from ``train`` only): ``pixels``, or
    ``hub`` (the backbone ``name``, a hub id or a local folder in its layout)."""
    if kind == "pixels":
        return pixel_features(train, *others)
    if kind == "hub":
        if not name:
            raise ValueError("features from the hub need the backbone's hub id or local folder (name)")
        return pretrained_features(name, train, *others, **kw)
    raise ValueError(f"features={kind!r} is not valid; choose one of: {', '.join(FEATURES)}")
