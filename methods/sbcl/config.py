"""SBCL / SupCon / CE config schema (one method, ``loss`` picks the arm) and the vision model schemas.

Defaults are the paper's CIFAR-LT stage 1 (shared/methods/sbcl.md): τ 0.1, τ_b 0.07, γ 0.25, δ 10, warm-up
10 epochs of SupCon then re-clustering every 10, SGD lr 0.5 momentum 0.9 wd 1e-4, batch 1024, 1000 epochs,
cosine with a 10-epoch linear warm-up; stage 2 LDAM-DRW for 200 epochs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from hydra.core.config_store import ConfigStore

from data.vision.options import AugmentConfig, FileListDataConfig, ProbeConfig
from runners.schemas import check_choice

LOSSES = ("ce", "supcon", "sbcl")
# joint: the classifier trained with the encoder (only for loss=ce); the others: stage 2 on frozen features.
CLASSIFIERS = ("joint", "ce", "balanced", "ldam_drw")
SPLIT_RULES = ("tertiles", "thresholds")


@dataclass
class SBCLConfig:
    _target_: str = "methods.sbcl.method.SBCL"
    # Multi-process strategies it supports (runners.distributed.strategy_refusal): ddp.
    strategies: ClassVar[tuple[str, ...]] = ("ddp",)
    name: str = "sbcl"
    loss: str = "sbcl"
    # Loss: τ, τ_b (the (τ/τ_b) factor of the subclass term), γ (class-term weight). SupCon uses τ_b = τ
    # (official SupConLoss), set by `supcon_tau_base`; SBCL's warm-up epochs use it too.
    tau: float = 0.1
    tau_base: float = 0.07
    supcon_tau_base: float = 0.1
    gamma: float = 0.25
    class_temperature: bool = True
    # Subclasses: floor size M = max(min_c n_c, δ); warm-up epochs of SupCon, then k-means every R epochs.
    delta: int = 10
    warmup_epochs: int = 10
    recluster_every: int = 10
    kmeans_iters: int = 35
    # Projection head feat → proj_hidden → proj_dim (proj_hidden 0: the encoder width, 64 for ResNet-32).
    proj_hidden: int = 0
    proj_dim: int = 128
    # Stage 1 optimisation.
    epochs: int = 1000
    batch_size: int = 1024
    lr: float = 0.5
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_warmup_epochs: int = 10
    augment: AugmentConfig = field(default_factory=lambda: AugmentConfig(kind="cifar"))
    # Stage 2.
    classifier: str = "ldam_drw"
    probe: ProbeConfig = field(
        default_factory=lambda: ProbeConfig(
            loss="ldam_drw", epochs=200, lr=0.1, batch_size=128, drw_epoch=160
        )
    )
    # Head / medium / tail groups (data.vision.splits): tertiles by training count, or the paper's
    # thresholds (> many, many..few, < few).
    split_rule: str = "tertiles"
    many: int = 100
    few: int = 20
    num_workers: int = 0

    def __post_init__(self) -> None:
        check_choice("method.loss", self.loss, LOSSES)
        check_choice("method.classifier", self.classifier, CLASSIFIERS)
        check_choice("method.split_rule", self.split_rule, SPLIT_RULES)
        if self.classifier == "joint" and self.loss != "ce":
            raise ValueError(
                "method.classifier=joint needs method.loss=ce (contrastive encoders have no head)"
            )
        if self.classifier not in ("joint", self.probe.loss):
            raise ValueError(f"method.classifier={self.classifier} but method.probe.loss={self.probe.loss}")
        for key in ("epochs", "batch_size", "recluster_every", "kmeans_iters", "delta", "proj_dim"):
            if getattr(self, key) < 1:
                raise ValueError(f"method.{key}={getattr(self, key)} must be >= 1")
        if min(self.tau, self.tau_base, self.supcon_tau_base) <= 0 or self.gamma < 0:
            raise ValueError("method.tau, tau_base and supcon_tau_base must be > 0 and method.gamma >= 0")


@dataclass
class SmallCNNConfig:
    """Conv–BN–ReLU stages with max-pooling between them, global average pool (data.vision.encoders)."""

    name: str = "small_cnn"
    channels: list[int] = field(default_factory=lambda: [32, 64])

    def __post_init__(self) -> None:
        if not self.channels or min(self.channels) < 1:
            raise ValueError(f"model.channels={self.channels}: need at least one positive width")


@dataclass
class ResNetConfig:
    """resnet32: the CIFAR ResNet (data.vision.resnet); resnet50: torchvision's (online users only)."""

    name: str = "resnet32"
    blocks_per_stage: int = 5

    def __post_init__(self) -> None:
        check_choice("model.name", self.name, ("resnet32", "resnet50"))


def register(cs: ConfigStore) -> None:
    cs.store(group="schema/method", name="sbcl", node=SBCLConfig)
    cs.store(group="schema/model", name="small_cnn", node=SmallCNNConfig)
    cs.store(group="schema/model", name="resnet", node=ResNetConfig)
    cs.store(group="schema/data", name="file_list", node=FileListDataConfig)
