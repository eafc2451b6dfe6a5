"""Fixed feature extractors for methods that learn on frozen features (CHAIN's linear model, probes).

Offline there is no pretrained vision backbone (OFFLINE.md), so the offline default is the standardised
pixels; ``resnet18`` is torchvision's ImageNet ResNet-18 (downloads its weights: online users only).
"""

from __future__ import annotations

import torch

FEATURES = ("pixels", "resnet18")


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


@torch.no_grad()
def resnet18_features(*images: torch.Tensor, batch_size: int = 256) -> list[torch.Tensor]:
    """Penultimate (512-d) ImageNet ResNet-18 features; grey images are repeated to three channels."""
    import torchvision

    net = torchvision.models.resnet18(weights="DEFAULT")
    net.fc = torch.nn.Identity()
    net.eval()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    out = []
    for x in images:
        parts = []
        for chunk in x.split(batch_size):
            chunk = chunk.expand(-1, 3, -1, -1) if chunk.shape[1] == 1 else chunk
            parts.append(net((chunk - mean) / std))
        out.append(torch.cat(parts))
    return out


def extract(kind: str, train: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    """Features of ``train`` and ``others`` (same extractor; statistics from ``train`` only)."""
    if kind == "pixels":
        return pixel_features(train, *others)
    if kind == "resnet18":
        return resnet18_features(train, *others)
    raise ValueError(f"features={kind!r} is not valid; choose one of: {', '.join(FEATURES)}")
