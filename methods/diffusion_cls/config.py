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
HEADS = ("linear", "attention", "attention_pos")  # attention: the official head; _pos: ours (heads.py)
UNET_SOURCES = ("train", "hub", "adm")  # adm: a guided-diffusion checkpoint (method.adm, adm.py)
# cached: one fixed-noise U-Net pass per image, stored, the head trained on the stored features (fast
# sweeps); official: diffssl's finetune.py, features made at every forward from randomly cropped and
# flipped images with fresh noise (methods/diffusion_cls/protocol.py).
PROBE_PROTOCOLS = ("cached", "official")


@dataclass
class DDPMTrainConfig:
    """The offline DDPM (diffusers UNet2DModel + DDPMScheduler, ε-prediction, linear β, T = 1000)."""

    steps: int = 2000
    batch_size: int = 64
    lr: float = 1e-3
    # Checkpoints and features land in cache_dir keyed by (model, data, training) so a sweep trains once;
    # null: data.cache.cache_dir("diffusion_cls"), under $REPROLAB_CACHE wherever the run is launched.
    cache_dir: str | None = None


@dataclass
class ADMConfig:
    """guided-diffusion ``create_model`` flags of an ADM checkpoint (defaults: the paper's, diffssl
    scripts/linear.sh's MODEL_FLAGS for 256x256_diffusion_uncond.pt)."""

    checkpoint: str | None = None  # path of the .pt state_dict (methods/diffusion_cls/adm.py)
    image_size: int = 256
    num_channels: int = 256
    num_res_blocks: int = 2
    channel_mult: str = ""  # "": guided-diffusion's default for image_size
    attention_resolutions: str = "32,16,8"
    num_head_channels: int = 64
    num_heads: int = 4  # used only when num_head_channels == -1
    learn_sigma: bool = True
    resblock_updown: bool = True
    use_scale_shift_norm: bool = True
    diffusion_steps: int = 1000


@dataclass
class DiffusionClsConfig:
    _target_: str = "methods.diffusion_cls.method.DiffusionCls"
    name: str = "diffusion_cls"
    features: str = "unet"
    # U-Net block: down.<i>, mid, up.<i> (whole diffusers resolution levels, 0-based), or the paper's
    # 1-based ADM block number (features.paper_blocks; 24 = output block 5, its best at 256x256).
    # t: the DDPM timestep of x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε.
    block: str = "mid"
    t: int = 50
    # Average-pool size of the feature map, capped at the map's size; null: the paper's, 2 for the
    # linear head, 16 for the attention heads.
    pooling: int | None = None
    # Other blocks to store from the same U-Net pass (cached float16): a sweep over blocks at one t names
    # its blocks here and runs the U-Net once per t; [] stores only method.block.
    cache_blocks: list[str] = field(default_factory=list)
    noise_seed: int = 0
    head: str = "linear"
    # Attention heads' width, heads and blocks (the official: 1024, 8, 2).
    attention_dim: int = 1024
    attention_heads: int = 8
    attention_layers: int = 2
    shots: int = 0
    # Hold out this share of the training split (stratified, fixed by data.split_seed) as validation:
    # the block × timestep grid picks its best cell on it, never on the test set.
    val_fraction: float = 0.0
    probe_protocol: str = "cached"
    # official protocol: the random crop's smallest window, as a fraction of the image side (0.8, as
    # guided-diffusion's random_crop_arr).
    crop_min: float = 0.8
    # Per-dimension z-scores of the cached features (neither the paper nor the official head has it);
    # null: on for the cached protocol, off for the official one.
    standardize: bool | None = None
    epochs: int = 28
    batch_size: int = 128
    # null: the official scripts', 1e-2 for the linear head (and the baselines), 5e-2 for attention.
    lr: float | None = None
    momentum: float = 0.0
    weight_decay: float = 0.0
    lr_step: int = 7
    extract_batch_size: int = 256
    # DataLoader worker processes (the paper scale's sets are decoded per item: data.image_size).
    num_workers: int = 0
    # cnn baseline: widths of data.vision.encoders.SmallCNN, trained with the probe's optimiser.
    cnn_channels: list[int] = field(default_factory=lambda: [32, 64])
    unet_source: str = "train"
    hub_name: str = "google/ddpm-cifar10-32"
    ddpm: DDPMTrainConfig = field(default_factory=DDPMTrainConfig)
    adm: ADMConfig = field(default_factory=ADMConfig)

    def __post_init__(self) -> None:
        check_choice("method.features", self.features, FEATURES)
        check_choice("method.head", self.head, HEADS)
        check_choice("method.unet_source", self.unet_source, UNET_SOURCES)
        check_choice("method.probe_protocol", self.probe_protocol, PROBE_PROTOCOLS)
        attention = self.head.startswith("attention")
        if self.pooling is None:
            self.pooling = 16 if attention else 2
        if self.lr is None:
            self.lr = 5e-2 if attention else 1e-2
        if self.standardize is None:
            self.standardize = self.probe_protocol == "cached"
        if self.standardize and self.probe_protocol == "official":
            raise ValueError("method.standardize=true needs method.probe_protocol=cached (stored features)")
        if not 0 < self.crop_min <= 1:
            raise ValueError(f"method.crop_min={self.crop_min} must be in (0, 1]")
        for block in (self.block, *self.cache_blocks):
            if not re.fullmatch(r"(down|up)\.\d+|mid|[1-9]\d*", block):
                raise ValueError(
                    f"method.block={block!r}: expected down.<i>, mid or up.<i> (diffusers levels) or the "
                    "paper's 1-based block number (24: ADM output block 5)"
                )
        if not 0 <= self.t < 1000 or self.pooling < 1 or self.shots < 0:
            raise ValueError("method.t must be in [0, 1000), method.pooling >= 1, method.shots >= 0")
        if self.num_workers < 0:
            raise ValueError(f"method.num_workers={self.num_workers} must be >= 0")
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
