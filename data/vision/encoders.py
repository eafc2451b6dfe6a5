"""Image encoders shared by the vision methods, built from the ``model`` config group.

``mlp`` (flatten + hidden layers), ``small_cnn`` (conv–BN–ReLU stages, global pool), ``resnet32`` (CIFAR
ResNet, data.vision.resnet) and ``resnet50`` (torchvision, online users only: torchvision is not a
dependency here). Each returns the module and its output width. ``pretrained_encoder`` loads a published
backbone by hub id (or a local folder in the same layout) with transformers' ``AutoModel.from_pretrained``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from data.vision.resnet import CifarResNet

ENCODERS = ("mlp", "small_cnn", "resnet32", "resnet50")


class MLPEncoder(nn.Module):
    def __init__(self, in_dim: int, hidden_dims: list[int]) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        for h in hidden_dims:
            layers += [nn.Linear(in_dim, h), nn.BatchNorm1d(h), nn.ReLU()]
            in_dim = h
        self.net = nn.Sequential(*layers)
        self.out_dim = in_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SmallCNN(nn.Module):
    """Conv 3×3 – BN – ReLU per width, max-pool 2 between stages (not after the last), global avg pool."""

    def __init__(self, in_channels: int, channels: list[int]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for i, w in enumerate(channels):
            layers += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU()]
            if i < len(channels) - 1:
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            c = w
        self.net = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.out_dim = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _name(model_cfg: Any) -> str:
    name = model_cfg.get("name") if hasattr(model_cfg, "get") else getattr(model_cfg, "name", None)
    return name or ("mlp" if "hidden_dims" in model_cfg else "small_cnn")


def build_encoder(model_cfg: Any, in_shape: tuple[int, int, int]) -> tuple[nn.Module, int]:
    """(encoder, feature width) for a (C, H, W) input."""
    name = _name(model_cfg)
    c, h, w = in_shape
    if name == "mlp":
        enc = MLPEncoder(c * h * w, list(model_cfg["hidden_dims"]))
    elif name == "small_cnn":
        enc = SmallCNN(c, list(model_cfg["channels"]))
    elif name == "resnet32":
        enc = CifarResNet(c, blocks_per_stage=int(model_cfg.get("blocks_per_stage", 5)))
    elif name == "resnet50":
        try:
            import torchvision
        except ImportError as ex:  # pragma: no cover - depends on the install
            raise ImportError("model=resnet50 needs torchvision: pip install reprolab[online]") from ex
        enc = torchvision.models.resnet50(weights=None)
        enc.fc = nn.Identity()
        enc.out_dim = 2048
    else:
        raise ValueError(f"model.name={name!r} is not a vision encoder; choose one of: {', '.join(ENCODERS)}")
    return enc, int(enc.out_dim)


class PretrainedEncoder(nn.Module):
    """A transformers vision backbone (``AutoModel``: ResNetModel for microsoft/resnet-18's layout) as
    images → pooled features. Inputs are standardised per channel with the statistics given (the training
    pool's: ColdStartAL normalises CIFAR with its dataset mean/std); grey images are repeated to RGB."""

    def __init__(self, backbone: nn.Module, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.backbone = backbone
        self.register_buffer("mean", mean.reshape(1, -1, 1, 1).float())
        self.register_buffer("std", std.reshape(1, -1, 1, 1).float())
        self.in_channels = int(getattr(backbone.config, "num_channels", 3))
        sizes = getattr(backbone.config, "hidden_sizes", None)
        self.out_dim = int(sizes[-1]) if sizes else int(backbone.config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        if x.shape[1] == 1 and self.in_channels == 3:
            x = x.expand(-1, 3, -1, -1)
        out = self.backbone(pixel_values=x)
        pooled = getattr(out, "pooler_output", None)
        if pooled is None:  # backbones without a pooler: average the last feature map / tokens
            hidden = out.last_hidden_state
            pooled = hidden.mean(dim=(2, 3)) if hidden.dim() == 4 else hidden.mean(dim=1)
        return pooled.flatten(1)


def pretrained_encoder(name: str, mean: torch.Tensor, std: torch.Tensor) -> PretrainedEncoder:
    """``AutoModel.from_pretrained(name)``: a hub id, or a local folder that ``save_pretrained`` wrote."""
    from transformers import AutoModel

    return PretrainedEncoder(AutoModel.from_pretrained(name), mean, std)
