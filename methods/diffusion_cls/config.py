"""Diffusion-feature classification (arXiv 2307.08702) config schema, and the tiny U-Net model schema.

One job = one probe: features of ``features`` (the trained / random U-Net at block ``block`` and timestep
``t``, raw pixels, or a supervised CNN trained end to end) on ``shots`` labelled images per class (0: all).
Probe defaults are the paper's (SGD without momentum, wd 0, lr 1e-2 linear / 5e-2 attention, batch 128,
28 epochs, StepLR(7, 0.1)); the small budget trains longer because a 5-shot set is one batch per epoch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore

from runners.schemas import check_choice

FEATURES = ("unet", "random_unet", "raw", "cnn")
HEADS = ("linear", "attention")
UNET_SOURCES = ("train", "hub")


@dataclass
class DDPMTrainConfig:
    """The offline DDPM (diffusers UNet2DModel + DDPMScheduler, ε-prediction, linear β, T = 1000)."""

    steps: int = 2000
    batch_size: int = 64
    lr: float = 1e-3
    # Checkpoints land in cache_dir keyed by (model, data, training) so a sweep trains once.
    cache_dir: str = ".cache/diffusion_cls"


@dataclass
class DiffusionClsConfig:
    _target_: str = "methods.diffusion_cls.method.DiffusionCls"
    name: str = "diffusion_cls"
    features: str = "unet"
    # U-Net block: down.<i>, mid, up.<i> (diffusers numbering, 0-based; the paper's ADM block 24 is its
    # output block 5). t: the DDPM timestep of x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε.
    block: str = "mid"
    t: int = 50
    # AdaptiveAvgPool2d size of the stored feature map (paper: 2 for the linear head).
    pooling: int = 2
    noise_seed: int = 0
    head: str = "linear"
    attention_dim: int = 64
    attention_heads: int = 4
    attention_layers: int = 2
    shots: int = 0
    # Hold out this share of the training split (stratified, fixed by data.split_seed) as validation:
    # the block × timestep grid picks its best cell on it, never on the test set.
    val_fraction: float = 0.0
    standardize: bool = True
    epochs: int = 28
    batch_size: int = 128
    lr: float = 1e-2
    momentum: float = 0.0
    weight_decay: float = 0.0
    lr_step: int = 7
    extract_batch_size: int = 256
    # cnn baseline: widths of data.vision.encoders.SmallCNN, trained with the probe's optimiser.
    cnn_channels: list[int] = field(default_factory=lambda: [32, 64])
    unet_source: str = "train"
    hub_name: str = "google/ddpm-cifar10-32"
    ddpm: DDPMTrainConfig = field(default_factory=DDPMTrainConfig)

    def __post_init__(self) -> None:
        check_choice("method.features", self.features, FEATURES)
        check_choice("method.head", self.head, HEADS)
        check_choice("method.unet_source", self.unet_source, UNET_SOURCES)
        if not re.fullmatch(r"(down|up)\.\d+|mid", self.block):
            raise ValueError(f"method.block={self.block!r}: expected down.<i>, mid or up.<i>")
        if not 0 <= self.t < 1000 or self.pooling < 1 or self.shots < 0:
            raise ValueError("method.t must be in [0, 1000), method.pooling >= 1, method.shots >= 0")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"method.val_fraction={self.val_fraction} must be in [0, 1)")


@dataclass
class TinyUNetConfig:
    """A small diffusers UNet2DModel for 8×8 digits (28×28 MNIST-5k is resized to sample_size)."""

    name: str = "tiny_unet"
    sample_size: int = 8
    in_channels: int = 1
    block_out_channels: list[int] = field(default_factory=lambda: [32, 64])
    layers_per_block: int = 1
    norm_num_groups: int = 8

    def __post_init__(self) -> None:
        if any(c % self.norm_num_groups for c in self.block_out_channels):
            raise ValueError("model.block_out_channels must be multiples of model.norm_num_groups")


def register(cs: ConfigStore) -> None:
    cs.store(group="schema/method", name="diffusion_cls", node=DiffusionClsConfig)
    cs.store(group="schema/model", name="tiny_unet", node=TinyUNetConfig)
