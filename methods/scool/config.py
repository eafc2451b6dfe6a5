"""SCooL config schema (arXiv 2306.09595; ../shared/methods/scool.md). Defaults: the official code's."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from hydra.core.config_store import ConfigStore

from runners.schemas import check_choice

# local: no communication · fedavg: one global average · dpsgd: Dirac-delta prior (a fixed graph) ·
# scool_sbm / scool_attention: the learned cooperation graph with the SBM or the attention prior.
ALGOS = ("local", "fedavg", "dpsgd", "scool_sbm", "scool_attention")
ATT_ENCODERS = ("paper", "official")
# noniid: c random classes per device · noniid_sbm: groups of devices with identical classes ·
# conflict: pairs of groups share their inputs but one of the pair permutes the labels.
PARTITIONS = ("noniid", "noniid_sbm", "conflict")
MODELS = ("mlp", "cnn")


@dataclass
class SCooLConfig:
    _target_: str = "methods.scool.method.SCooL"
    # Multi-process strategies it supports (runners.distributed.strategy_refusal): ddp, each rank simulating
    # n_devices / world of the devices (methods/scool/shard.py).
    strategies: ClassVar[tuple[str, ...]] = ("ddp",)
    name: str = "scool"
    algo: str = "scool_sbm"
    partition: str = "noniid"
    n_devices: int = 100
    # None: the paper's (Table 1): 2 of CIFAR-10's 10 classes, 10 of CIFAR-100's 100 (C // 10, at least 2).
    classes_per_device: int | None = None
    # Groups of noniid_sbm and conflict (conflict needs an even number: pairs with swapped labels).
    groups: int = 5
    # Local samples per (device, class) shard; None: as many as the training set allows (disjoint shards).
    samples_per_class: int | None = None
    model: str = "mlp"
    hidden_dims: list[int] = field(default_factory=lambda: [200])
    # Communication rounds; per round every device runs `local_steps` SGD steps (batch, lr, weight decay λ).
    rounds: int = 100
    local_steps: int = 250
    batch_size: int = 10
    lr: float = 0.01
    weight_decay: float = 5e-4
    # The official training transform (util.py, partition_non_iid_random_dataset): RandomCrop(32, pad 4,
    # fill 128), horizontal flip, ColorJitter(saturation=0.9) on every local batch; `normalize`: the
    # per-channel mean/std of util.py (CIFAR-10's, CIFAR-100's; other sets: their training set's) on
    # training and test images. On at scale=paper (conf/budget/scool/paper.yaml).
    augment: bool = False
    normalize: bool = False
    # FedAvg: the share of devices whose local models are averaged each round (10%); every device then
    # starts the next round from that average.
    fedavg_fraction: float = 0.1
    # E-step input Y_ij = −L(θ_i; D_j) on `loss_batch` samples of device j (the official code uses 10).
    loss_batch: int = 10
    # D-PSGD's fixed graph: each device mixes uniformly with itself and `dpsgd_neighbours` random devices.
    dpsgd_neighbours: int = 4
    # SBM prior (eqs. 18–20): K blocks (the official SCooL_SBM.py's k = 2; None: `groups`), B = b_in on
    # the diagonal, b_out off it, Dirichlet α.
    sbm_blocks: int | None = 2
    sbm_b_in: float = 0.8
    sbm_b_out: float = 0.2
    sbm_alpha: float = 1.0
    # The scale of −L in the E-step: the official scripts' 2 for non-IID and 1 for non-IID-SBM (None: by
    # partition; conflict, grouped, takes non-IID-SBM's).
    sbm_scale: float | None = None
    # The device's own weight in the M-step. Paper (eq. 22): 1, the ∇L(D_i; θ_i) term has no W factor.
    # Official (SBM.py, optimize_W over all i, j): the edge posterior W_ii = σ((φ_i logit(B) φ_i + Y_ii) /
    # scale), at most σ(log 4 / 2) ≈ 0.67 at scale 2. The paper's is the default; true: the official's.
    sbm_self_edge: bool = False
    sbm_iters: int = 10
    # Keep φ between rounds (variational EM). The official code re-fits from a random φ every round with
    # 2 iterations: sbm_warm_start=false, sbm_iters=2.
    sbm_warm_start: bool = True
    # Attention prior (eqs. 25–31, methods/scool/attention.py): loss softmax temperature (None: the official
    # scripts' 2 for non-IID, 9 for non-IID-SBM and conflict). `att_encoder`: paper (the default, as the
    # project follows the paper where it and the code differ): one encoder shared by all devices, widths
    # (10, 5), Adam lr 0.1, weight decay 0.01 decoupled (App. C.1; attention.py), trained towards w (eq. 31);
    # official (SCooL_ATTENTION.py): one encoder per device, widths (10, 20), AdamW lr 0.2 (the scripts'
    # --mixing_lr), betas (0.9, 0.99), weight decay 0.01, trained towards ŵ = softmax(−L/scale), the
    # encoders averaged over devices after every round (`att_average`, official mode only; false: never),
    # and the sparsification mask taken from ŵ (the paper: from the learned w). None below: the mode's
    # value. Steps per round: the official --mixing_updates 1 (the paper gives none).
    att_scale: float | None = None
    att_encoder: str = "paper"
    att_dims: list[int] | None = None
    att_lr: float | None = None
    att_weight_decay: float = 0.01
    att_steps: int = 1
    att_average: bool = True
    # After round `sparsify_round` (-1: never) keep int(sparsify_keep · n) devices, the device itself
    # included, by mixing weight (training_utils.py, select_top_faction_mixing_weight_mask). None: the
    # official scripts' mask_fraction, 0.1 for non-IID (10 of 100) and 0.2 for non-IID-SBM (and conflict).
    sparsify_round: int = 10
    sparsify_keep: float | None = None
    eval_every: int = 5
    # Test images per forward in the evaluation (every device × this many): 100 devices × 2,000 CIFAR
    # images through the vmapped CNN in one call need about 40 GB; chunks give identical results.
    eval_chunk: int = 500

    def sbm_scale_for(self) -> float:
        if self.sbm_scale is not None:
            return self.sbm_scale
        return 2.0 if self.partition == "noniid" else 1.0

    def att_scale_for(self) -> float:
        if self.att_scale is not None:
            return self.att_scale
        return 2.0 if self.partition == "noniid" else 9.0

    def att_dims_for(self) -> list[int]:
        if self.att_dims is not None:
            return list(self.att_dims)
        return [10, 20] if self.att_encoder == "official" else [10, 5]

    def att_lr_for(self) -> float:
        if self.att_lr is not None:
            return self.att_lr
        return 0.2 if self.att_encoder == "official" else 0.1

    def sparsify_keep_for(self) -> float:
        if self.sparsify_keep is not None:
            return self.sparsify_keep
        return 0.1 if self.partition == "noniid" else 0.2

    def classes_for(self, num_classes: int) -> int:
        if self.classes_per_device is not None:
            return self.classes_per_device
        return max(2, num_classes // 10)

    def __post_init__(self) -> None:
        choices = (
            ("algo", ALGOS),
            ("partition", PARTITIONS),
            ("model", MODELS),
            ("att_encoder", ATT_ENCODERS),
        )
        for key, valid in choices:
            check_choice(f"method.{key}", getattr(self, key), valid)
        positive = ("n_devices", "groups", "rounds", "local_steps", "batch_size", "eval_chunk")
        for key in (*positive, "loss_batch", "sbm_iters", "att_steps", "eval_every"):
            if getattr(self, key) < 1:
                raise ValueError(f"method.{key}={getattr(self, key)} must be >= 1")
        if self.partition == "conflict" and self.groups % 2:
            raise ValueError(f"method.groups={self.groups} must be even for partition=conflict")
        if self.partition != "noniid" and self.n_devices % self.groups:
            raise ValueError(f"method.n_devices={self.n_devices} must be a multiple of method.groups")
        if not 0 < self.sbm_b_out < 1 or not 0 < self.sbm_b_in < 1:
            raise ValueError("method.sbm_b_in and method.sbm_b_out must be in (0, 1)")
        if self.classes_per_device is not None and self.classes_per_device < 1:
            raise ValueError(f"method.classes_per_device={self.classes_per_device} must be >= 1")
        if self.sparsify_keep is not None and not 0 < self.sparsify_keep <= 1:
            raise ValueError(f"method.sparsify_keep={self.sparsify_keep} must be in (0, 1]")
        if self.att_dims is not None and (not self.att_dims or min(self.att_dims) < 1):
            raise ValueError(f"method.att_dims={self.att_dims} must be a non-empty list of widths >= 1")
        if not 0 < self.fedavg_fraction <= 1:
            raise ValueError(f"method.fedavg_fraction={self.fedavg_fraction} must be in (0, 1]")


def register(cs: ConfigStore) -> None:
    cs.store(group="schema/method", name="scool", node=SCooLConfig)
