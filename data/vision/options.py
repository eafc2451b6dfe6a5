"""Option dataclasses of the shared vision code, kept free of torch so config schemas can nest them."""

from __future__ import annotations

from dataclasses import dataclass, field

from runners.schemas import check_choice

AUGMENT_KINDS = ("none", "small", "cifar")
PROBE_LOSSES = ("ce", "balanced", "ldam_drw")
PROBE_VIEWS = ("none", "crop_flip")
PROBE_SCHEDULES = ("cosine", "step")


@dataclass
class AugmentConfig:
    """``small``: shift / noise / pixel dropout for the offline grey sets; ``cifar``: the SupCon recipe."""

    kind: str = "small"
    max_shift: int = 1  # pixels (small)
    noise_std: float = 0.05
    dropout: float = 0.1
    crop_scale_min: float = 0.2  # RandomResizedCrop area (cifar)
    jitter_p: float = 0.8
    jitter_strength: float = 0.4
    jitter_hue: float = 0.1  # ColorJitter(0.4, 0.4, 0.4, 0.1) of the official SBCL CIFAR transform
    grayscale_p: float = 0.2

    def __post_init__(self) -> None:
        check_choice("augment.kind", self.kind, AUGMENT_KINDS)


@dataclass
class ProbeConfig:
    """A linear classifier on frozen features (data.vision.probes)."""

    loss: str = "balanced"
    epochs: int = 100
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 128
    # LDAM-DRW (SBCL's stage 2): margin 0.5, scale 30, β 0.9999, re-weighting from epoch 160 of 200.
    max_margin: float = 0.5
    scale: float = 30.0
    beta: float = 0.9999
    drw_epoch: int = 160
    # views: none = features of the clean images, computed once; crop_flip = RandomCrop(pad) + flip views
    # through the frozen encoder every epoch (official SimCLR/linear_classify.py, methods.sbcl.stage2).
    views: str = "none"
    pad: int = 4
    # schedule: cosine (per epoch, to 0) or step: linear warm-up over warmup_epochs, then ×decay after each
    # milestone epoch (official: 5, ×0.1 after 140 and after 180).
    schedule: str = "cosine"
    warmup_epochs: int = 0
    milestones: list[int] = field(default_factory=list)
    decay: float = 0.1

    def __post_init__(self) -> None:
        check_choice("probe.loss", self.loss, PROBE_LOSSES)
        check_choice("probe.views", self.views, PROBE_VIEWS)
        check_choice("probe.schedule", self.schedule, PROBE_SCHEDULES)
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(
                f"probe.epochs={self.epochs} and probe.batch_size={self.batch_size} must be >= 1"
            )


@dataclass
class FileListDataConfig:
    """A long-tailed set given as ``path label`` file lists (ImageNet-LT: 1000 classes, iNat 2018: 8142)."""

    name: str = "imagenet_lt"
    root: str = "~/data/imagenet"
    train_list: str = "ImageNet_LT_train.txt"
    test_list: str = "ImageNet_LT_test.txt"
    size: int = 224
    num_classes: int = 1000

    def __post_init__(self) -> None:
        if self.size < 8 or self.num_classes < 2:
            raise ValueError(f"data.size={self.size} must be >= 8 and data.num_classes >= 2")
