"""SCooL config schema (arXiv 2306.09595; ../shared/methods/scool.md). Defaults: the official code's."""

from __future__ import annotations

from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore

from runners.schemas import check_choice

# local: no communication · fedavg: one global average · dpsgd: Dirac-delta prior (a fixed graph) ·
# scool_sbm / scool_attention: the learned cooperation graph with the SBM or the attention prior.
ALGOS = ("local", "fedavg", "dpsgd", "scool_sbm", "scool_attention")
# noniid: c random classes per device · noniid_sbm: groups of devices with identical classes ·
# conflict: pairs of groups share their inputs but one of the pair permutes the labels.
PARTITIONS = ("noniid", "noniid_sbm", "conflict")
MODELS = ("mlp", "cnn")


@dataclass
class SCooLConfig:
    _target_: str = "methods.scool.method.SCooL"
    name: str = "scool"
    algo: str = "scool_sbm"
    partition: str = "noniid"
    n_devices: int = 100
    classes_per_device: int = 2
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
    # E-step input Y_ij = −L(θ_i; D_j) on `loss_batch` samples of device j (the official code uses 10).
    loss_batch: int = 10
    # D-PSGD's fixed graph: each device mixes uniformly with itself and `dpsgd_neighbours` random devices.
    dpsgd_neighbours: int = 4
    # SBM prior (eqs. 18–20): K blocks (None: `groups`), B = b_in on the diagonal, b_out off it, Dirichlet α.
    sbm_blocks: int | None = None
    sbm_b_in: float = 0.8
    sbm_b_out: float = 0.2
    sbm_alpha: float = 1.0
    # The scale of −L in the E-step: the spec's 2 for non-IID and 1 for non-IID-SBM (None: by partition).
    sbm_scale: float | None = None
    sbm_iters: int = 10
    # Keep φ between rounds (variational EM). The official code re-fits from a random φ every round with
    # 2 iterations: sbm_warm_start=false, sbm_iters=2.
    sbm_warm_start: bool = True
    # Attention prior (eqs. 29–31): loss softmax temperature, encoder width, its Adam lr and steps per round.
    att_scale: float = 1.0
    att_dim: int = 32
    att_lr: float = 1e-3
    att_steps: int = 10
    # After round `sparsify_round` keep each device's top `sparsify_keep` share of neighbours (-1: never).
    sparsify_round: int = 10
    sparsify_keep: float = 0.2
    eval_every: int = 5

    def sbm_scale_for(self) -> float:
        if self.sbm_scale is not None:
            return self.sbm_scale
        return 1.0 if self.partition == "noniid_sbm" else 2.0

    def __post_init__(self) -> None:
        for key, valid in (("algo", ALGOS), ("partition", PARTITIONS), ("model", MODELS)):
            check_choice(f"method.{key}", getattr(self, key), valid)
        positive = ("n_devices", "classes_per_device", "groups", "rounds", "local_steps", "batch_size")
        for key in (*positive, "loss_batch", "sbm_iters", "att_dim", "eval_every"):
            if getattr(self, key) < 1:
                raise ValueError(f"method.{key}={getattr(self, key)} must be >= 1")
        if self.partition == "conflict" and self.groups % 2:
            raise ValueError(f"method.groups={self.groups} must be even for partition=conflict")
        if self.partition != "noniid" and self.n_devices % self.groups:
            raise ValueError(f"method.n_devices={self.n_devices} must be a multiple of method.groups")
        if not 0 < self.sbm_b_out < 1 or not 0 < self.sbm_b_in < 1:
            raise ValueError("method.sbm_b_in and method.sbm_b_out must be in (0, 1)")
        if not 0 < self.sparsify_keep <= 1:
            raise ValueError(f"method.sparsify_keep={self.sparsify_keep} must be in (0, 1]")


def register(cs: ConfigStore) -> None:
    cs.store(group="schema/method", name="scool", node=SCooLConfig)
