"""SBCL stage 1 (contrastive or CE training of the encoder) and stage 2 (a classifier on frozen features) as
one LightningModule, so the fit runner trains, checkpoints and tests it like any other ``fit`` method.

Per batch two augmented views are made on the device; z = normalise(proj(encoder(view))). The SBCL arm
re-clusters at the start of epoch ``warmup + k·R`` (k = 0, 1, ...): embed the clean training set, k-means
per class, class temperatures. Before that it trains with SupCon (the official warm-up). Subclass ids
live in a buffer, so a resumed run keeps them. ``method.input_mean/std`` put a normalisation layer in front
of the encoder. Stage 2 is a linear probe on the clean images' features (``probe.views=none``) or, at
paper scale, the official one on crop/flip views every epoch (methods.sbcl.stage2).

Data parallel (``hardware=ddp``): ``method.batch_size`` is the global batch, split over the ranks; the
contrastive loss sees the whole global batch (features all-gathered with gradients, methods.sbcl.loss
``gather_batch``), so its negatives do not depend on the number of devices; k-means runs once, on rank 0,
and its subclass ids and class temperatures are broadcast, so every rank uses the same assignment; the
test predictions of every rank are gathered before the accuracies. Each rank draws its own augmentations.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from data.vision.augment import Normalize, augment
from data.vision.probes import train_linear_probe
from data.vision.splits import frequency_groups, group_accuracies
from methods.sbcl.config import SBCLConfig
from methods.sbcl.loss import gather_batch, sbcl_loss
from methods.sbcl.stage2 import Stage2Result, train_on_views
from methods.sbcl.subclasses import assign_subclasses, class_temperatures, subclass_counts


class SBCLModule(pl.LightningModule):
    def __init__(
        self,
        cfg: SBCLConfig,
        encoder: nn.Module,
        feat_dim: int,
        class_counts: list[int],
        seed: int,
        curve: Callable[[dict[str, float], int], None] | None = None,
        progress: Callable[[int, str], AbstractContextManager[Any]] | None = None,
    ) -> None:
        super().__init__()
        wrapped = isinstance(encoder, nn.Sequential) and isinstance(encoder[0], Normalize)
        if cfg.input_mean and not wrapped:  # the official transforms.Normalize, as the encoder's first layer
            encoder = nn.Sequential(Normalize(cfg.input_mean, cfg.input_std), encoder)
        self.cfg, self.encoder, self.seed, self.curve, self.progress = cfg, encoder, seed, curve, progress
        self.stage2: Stage2Result | None = None
        self.num_classes = len(class_counts)
        self.class_counts = list(class_counts)
        hidden = cfg.proj_hidden or feat_dim
        self.proj = nn.Sequential(nn.Linear(feat_dim, hidden), nn.ReLU(), nn.Linear(hidden, cfg.proj_dim))
        self.joint_head = nn.Linear(feat_dim, self.num_classes) if cfg.loss == "ce" else None
        self.probe: nn.Module | None = None
        self.k_per_class = subclass_counts(class_counts, cfg.delta)
        self.floor_size = max(min(class_counts), cfg.delta)
        n = sum(class_counts)
        self.register_buffer("sub_ids", torch.full((n,), -1, dtype=torch.long))
        self.register_buffer("class_tau", torch.full((self.num_classes,), cfg.tau))
        self.groups = frequency_groups(class_counts, cfg.split_rule, cfg.many, cfg.few)
        self.gen = torch.Generator().manual_seed(seed)  # the augmentations'
        self._preds: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []
        self._indices: list[torch.Tensor] = []
        self._epoch_losses: list[float] = []

    def generators(self) -> dict[str, torch.Generator]:
        """Declared to the fit runner, which keeps their states in last.ckpt for an exact resume."""
        return {"augment": self.gen}

    def setup(self, stage: str) -> None:
        """Under data parallelism: each rank takes 1/W of the global batch and its own augmentation
        stream (rank 0 keeps the single-process one)."""
        world = self.trainer.world_size
        if world > 1 and stage == "fit":
            if self.cfg.batch_size % world:
                raise ValueError(
                    f"method.batch_size={self.cfg.batch_size} is the global batch and must split evenly "
                    f"over the {world} ranks"
                )
            self.trainer.datamodule.batch_size = self.cfg.batch_size // world
            if self.global_rank:
                self.gen.manual_seed(self.seed + 1_000_003 * self.global_rank)

    # ------------------------------------------------------------------ embeddings and clustering

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.proj(self.encoder(x)), dim=1)

    @torch.no_grad()
    def embed_train_set(self, projected: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(embeddings, labels) of the clean training images in dataset order, in eval mode."""
        was_training = self.training
        self.eval()
        outs, labels = [], []
        for x, y, _ in self.trainer.datamodule.plain_train_dataloader():
            x = x.to(self.device)
            outs.append(self.embed(x) if projected else self.encoder(x))
            labels.append(y.to(self.device))
        self.train(was_training)
        return torch.cat(outs), torch.cat(labels)

    def recluster(self) -> dict[str, float]:
        """Cluster on rank 0 only and broadcast the ids, temperatures and their statistics to every rank
        (a single process: the same call, without the broadcast)."""
        trainer = self._trainer
        payload = None
        if trainer is None or trainer.is_global_zero:
            sub, tau, stats = self._cluster()
            payload = (sub.cpu(), tau.cpu(), stats)
        if trainer is not None and trainer.world_size > 1:
            payload = trainer.strategy.broadcast(payload, src=0)
        sub, tau, stats = payload
        self.sub_ids.copy_(sub.to(self.sub_ids.device))
        self.class_tau.copy_(tau.to(self.class_tau.device))
        return stats

    def _cluster(self) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        z, y = self.embed_train_set(projected=True)
        sub = assign_subclasses(
            z, y, self.k_per_class, seed=self.seed + self.current_epoch, iters=self.cfg.kmeans_iters
        )
        tau = self.class_tau
        if self.cfg.class_temperature:
            tau = class_temperatures(z, y, self.k_per_class, self.cfg.tau).to(self.class_tau.device)
        sizes = torch.bincount(sub, minlength=sum(self.k_per_class)).float()
        offsets = np.concatenate([[0], np.cumsum(self.k_per_class)])
        lo, hi = (
            torch.as_tensor(offsets[:-1], device=y.device)[y],
            torch.as_tensor(offsets[1:], device=y.device)[y],
        )
        stats = {
            "sub/num_subclasses": float(sum(self.k_per_class)),
            "sub/size_over_M_mean": float(sizes.mean() / self.floor_size),
            "sub/size_over_M_min": float(sizes.min() / self.floor_size),
            "sub/size_over_M_max": float(sizes.max() / self.floor_size),
            "sub/ids_in_range": float(((sub >= lo) & (sub < hi)).float().mean()),
            "sub/tau_min": float(tau.min()),
            "sub/tau_max": float(tau.max()),
        }
        return sub, tau, stats

    def clustering_active(self) -> bool:
        return self.cfg.loss == "sbcl" and self.current_epoch >= self.cfg.warmup_epochs

    def on_train_epoch_start(self) -> None:
        cfg = self.cfg
        since = self.current_epoch - cfg.warmup_epochs
        if cfg.loss == "sbcl" and since >= 0 and (since % cfg.recluster_every == 0 or self.sub_ids[0] < 0):
            for k, v in self.recluster().items():
                self.log(k, v, on_epoch=True, on_step=False)

    # ------------------------------------------------------------------ stage 1

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        cfg = self.cfg
        x, y, idx = batch
        if cfg.loss == "ce":
            logits = self.joint_head(self.encoder(augment(x, cfg.augment, self.gen)))
            loss = F.cross_entropy(logits, y)
            reported = self._mean_over_ranks(loss.detach())
            self.log("loss/ce", reported, on_epoch=True, on_step=False)
        else:
            views = torch.cat([augment(x, cfg.augment, self.gen), augment(x, cfg.augment, self.gen)])
            z = self.embed(views)
            if self.clustering_active():
                z, y, s = gather_batch(z, y, self.sub_ids[idx])
                terms = sbcl_loss(z, y, s, cfg.tau, cfg.tau_base, cfg.gamma, self.class_tau)
                self.log("loss/class_term", terms.cls, on_epoch=True, on_step=False)
            else:  # SupCon: s = y, no class term, τ_b = τ (also SBCL's warm-up)
                z, y, _ = gather_batch(z, y, y)
                terms = sbcl_loss(z, y, y, cfg.tau, cfg.supcon_tau_base, 0.0)
            self.log("loss/subclass_term", terms.sub, on_epoch=True, on_step=False)
            loss = reported = terms.loss  # the whole global batch's loss: the same on every rank
        self.log("train_loss", reported, on_epoch=True, on_step=False, prog_bar=True)
        self._epoch_losses.append(float(reported.detach()))
        return loss

    def _mean_over_ranks(self, value: torch.Tensor) -> torch.Tensor:
        """A per-rank value averaged over the ranks, here in the step (where every rank issues its
        collectives in the same order; Lightning's lazy ``sync_dist`` at epoch end would not be)."""
        if self._trainer is None or self.trainer.world_size == 1:
            return value
        return self.trainer.strategy.reduce(value.clone(), reduce_op="mean")

    def on_train_epoch_end(self) -> None:
        if self.curve is not None and self._epoch_losses:
            self.curve({"train_loss": float(np.mean(self._epoch_losses))}, self.current_epoch + 1)
        self._epoch_losses = []

    def configure_optimizers(self) -> Any:
        cfg = self.cfg
        opt = torch.optim.SGD(
            self.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
        steps_per_epoch = max(1, self.trainer.estimated_stepping_batches // max(1, cfg.epochs))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, stage1_lr_factor(cfg, steps_per_epoch))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # ------------------------------------------------------------------ stage 2 and test

    def on_train_end(self) -> None:
        if self.cfg.classifier == "joint":
            return
        if self.cfg.probe.views == "crop_flip":  # the official stage 2 (methods.sbcl.stage2)
            dm = self.trainer.datamodule
            with torch.enable_grad():
                self.stage2 = train_on_views(
                    self.encoder,
                    dm.train_set,
                    dm.test_dataloader(),
                    self.num_classes,
                    self.cfg.probe,
                    self.seed,
                    self.device,
                    self.progress,
                )
            self.probe = self.stage2.head
            return
        with torch.enable_grad():
            feats, labels = self.embed_train_set(projected=False)
            self.probe = train_linear_probe(
                feats.detach().clone(), labels.clone(), self.num_classes, self.cfg.probe, self.seed
            )

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.encoder(x)
        head = self.joint_head if self.cfg.classifier == "joint" else self.probe
        if head is None:  # tested without having trained (e.g. a finished run re-tested): fit stage 2 now
            with torch.inference_mode(False), torch.enable_grad():
                self.on_train_end()
            head = self.probe
        return head(feats)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        x, y, idx = batch
        self._preds.append(self.classify(x).argmax(dim=1))
        self._labels.append(y)
        self._indices.append(torch.as_tensor(idx, device=y.device))

    def on_test_epoch_end(self) -> None:
        pred, labels, idx = torch.cat(self._preds), torch.cat(self._labels), torch.cat(self._indices)
        self._preds, self._labels, self._indices = [], [], []
        if self.trainer.world_size > 1:  # every rank's share (the sampler pads with repeats: keep each once)
            pred, labels, idx = (self.all_gather(t).flatten() for t in (pred, labels, idx))
            where = torch.zeros(int(idx.max()) + 1, dtype=torch.long, device=idx.device)
            where[idx] = torch.arange(len(idx), device=idx.device)  # repeats agree: any one will do
            keep = where[torch.unique(idx)]
            pred, labels = pred[keep], labels[keep]
        pred, labels = pred.cpu().numpy(), labels.cpu().numpy()
        for k, v in group_accuracies(pred, labels, self.groups, self.num_classes).items():
            self.log(k, v)
        if self.stage2 is not None and self.stage2.test_acc:
            # The official code's printed figure: the best epoch's accuracy, the epoch chosen on the test set.
            self.log("acc_test_selected", max(self.stage2.test_acc))
            self.log("stage2_best_epoch", float(self.stage2.best_epoch))


def stage1_lr_factor(cfg: SBCLConfig, steps_per_epoch: int) -> Callable[[int], float]:
    """Stage 1's lr / ``cfg.lr`` at each optimiser step, as the official SimCLR/main.py sets it.

    ``adjust_learning_rate``: per epoch e, lr_e = η_min + (lr − η_min)(1 + cos(π e / E)) / 2 with
    η_min = lr · lr_min_ratio (lr · 0.1⁴). ``warmup_learning_rate``: in the first W epochs, per step, linear
    from the absolute ``lr_warmup_from`` (0.01) to the cosine's lr_W. The official ramp counts from epoch
    −1 (p = (batch + (epoch − 1)·T) / (W·T) for epoch ≤ W, so its first steps get a negative lr); here it
    runs over epochs 0 … W − 1, p from 0 to 1.
    """
    lr, epochs, warm = cfg.lr, max(1, cfg.epochs), cfg.lr_warmup_epochs
    eta_min = lr * cfg.lr_min_ratio

    def cosine(epoch: int) -> float:
        return eta_min + (lr - eta_min) * (1 + math.cos(math.pi * min(epoch, epochs) / epochs)) / 2

    warm_to = cosine(warm)

    def factor(step: int) -> float:
        epoch, batch = divmod(step, steps_per_epoch)
        if epoch < warm:
            p = (batch + epoch * steps_per_epoch) / (warm * steps_per_epoch)
            return (cfg.lr_warmup_from + p * (warm_to - cfg.lr_warmup_from)) / lr
        return cosine(epoch) / lr

    return factor
