"""SBCL stage 1 (contrastive or CE training of the encoder) and stage 2 (a classifier on frozen features) as
one LightningModule, so the fit runner trains, checkpoints and tests it like any other ``fit`` method.

Per batch two augmented views are made on the device; z = normalise(proj(encoder(view))). The SBCL arm
re-clusters at the start of epoch ``warmup + k·R`` (k = 0, 1, ...): embed the clean training set, k-means
per class, class temperatures. Before that it trains with SupCon (the official warm-up). Subclass ids
live in a buffer, so a resumed run keeps them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from data.vision.augment import augment
from data.vision.probes import train_linear_probe
from data.vision.splits import frequency_groups, group_accuracies
from methods.sbcl.config import SBCLConfig
from methods.sbcl.loss import sbcl_loss
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
    ) -> None:
        super().__init__()
        self.cfg, self.encoder, self.seed, self.curve = cfg, encoder, seed, curve
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
        self.gen = torch.Generator().manual_seed(seed)
        self._preds: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []
        self._epoch_losses: list[float] = []

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
        z, y = self.embed_train_set(projected=True)
        sub = assign_subclasses(
            z, y, self.k_per_class, seed=self.seed + self.current_epoch, iters=self.cfg.kmeans_iters
        )
        self.sub_ids.copy_(sub.to(self.sub_ids.device))
        if self.cfg.class_temperature:
            self.class_tau.copy_(class_temperatures(z, y, self.k_per_class, self.cfg.tau).to(self.device))
        sizes = torch.bincount(sub, minlength=sum(self.k_per_class)).float()
        offsets = np.concatenate([[0], np.cumsum(self.k_per_class)])
        lo, hi = (
            torch.as_tensor(offsets[:-1], device=y.device)[y],
            torch.as_tensor(offsets[1:], device=y.device)[y],
        )
        return {
            "sub/num_subclasses": float(sum(self.k_per_class)),
            "sub/size_over_M_mean": float(sizes.mean() / self.floor_size),
            "sub/size_over_M_min": float(sizes.min() / self.floor_size),
            "sub/size_over_M_max": float(sizes.max() / self.floor_size),
            "sub/ids_in_range": float(((sub >= lo) & (sub < hi)).float().mean()),
            "sub/tau_min": float(self.class_tau.min()),
            "sub/tau_max": float(self.class_tau.max()),
        }

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
            self.log("loss/ce", loss, on_epoch=True, on_step=False)
        else:
            views = torch.cat([augment(x, cfg.augment, self.gen), augment(x, cfg.augment, self.gen)])
            z = self.embed(views)
            if self.clustering_active():
                terms = sbcl_loss(z, y, self.sub_ids[idx], cfg.tau, cfg.tau_base, cfg.gamma, self.class_tau)
                self.log("loss/class_term", terms.cls, on_epoch=True, on_step=False)
            else:  # SupCon: s = y, no class term, τ_b = τ (also SBCL's warm-up)
                terms = sbcl_loss(z, y, y, cfg.tau, cfg.supcon_tau_base, 0.0)
            self.log("loss/subclass_term", terms.sub, on_epoch=True, on_step=False)
            loss = terms.loss
        self.log("train_loss", loss, on_epoch=True, on_step=False, prog_bar=True)
        self._epoch_losses.append(float(loss.detach()))
        return loss

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
        warm, total = cfg.lr_warmup_epochs * steps_per_epoch, max(1, cfg.epochs * steps_per_epoch)

        def factor(step: int) -> float:  # linear warm-up from 1% to the cosine curve, then cosine to 0
            cosine = 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
            return cosine * (0.01 + 0.99 * step / warm) if step < warm else cosine

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # ------------------------------------------------------------------ stage 2 and test

    def on_train_end(self) -> None:
        if self.cfg.classifier == "joint":
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
        x, y, _ = batch
        self._preds.append(self.classify(x).argmax(dim=1).cpu())
        self._labels.append(y.cpu())

    def on_test_epoch_end(self) -> None:
        pred, labels = torch.cat(self._preds).numpy(), torch.cat(self._labels).numpy()
        self._preds, self._labels = [], []
        for k, v in group_accuracies(pred, labels, self.groups, self.num_classes).items():
            self.log(k, v)
