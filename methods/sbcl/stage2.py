"""SBCL's stage 2 as the official ``SimCLR/linear_classify.py`` runs it: a classifier on the frozen encoder,
fed fresh RandomCrop(32, padding 4) + flip views of the training images every epoch (the encoder in eval
mode, so its batch-norm statistics stay fixed), SGD momentum 0.9 with weight decay 0, lr warmed up
linearly over 5 epochs then ×0.1 after epoch 140 and ×0.01 after 180 (``adjust_learning_rate``), batch
128, 200 epochs, LDAM with the effective-number class weights (``train_rule='DRW'``).

The paper names the classifier LDAM-DRW, whose re-weighting is deferred (Cao et al. 2019: from epoch 160);
the official code builds the weighted loss in every epoch. ``probe.drw_epoch`` keeps the paper's deferral;
``probe.drw_epoch=0`` is the official code's.

The official code tests after every epoch and prints the best test accuracy so far. That figure selects
the epoch on the test set, so it is kept apart: ``acc_test_selected`` beside the final epoch's accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from data.vision.augment import crop_flip
from data.vision.options import ProbeConfig
from data.vision.probes import (
    NormedLinear,
    balanced_weights,
    effective_number_weights,
    ldam_loss,
    ldam_margins,
)


def step_lr(epoch: int, cfg: ProbeConfig) -> float:
    """The lr of 0-based ``epoch``: official ``adjust_learning_rate`` counts epochs from 1, ramps
    lr·e/warm for e ≤ warm, then multiplies by ``decay`` once for every milestone m with e > m."""
    e = epoch + 1
    if e <= cfg.warmup_epochs:
        return cfg.lr * e / cfg.warmup_epochs
    return cfg.lr * cfg.decay ** sum(e > m for m in cfg.milestones)


def cosine_lr(epoch: int, cfg: ProbeConfig) -> float:
    return 0.5 * cfg.lr * (1 + math.cos(math.pi * epoch / cfg.epochs))


@dataclass
class Stage2Result:
    head: nn.Module
    test_acc: list[float]  # overall test accuracy after each epoch (empty without a test set)

    @property
    def best_epoch(self) -> int:
        """1-based epoch with the highest test accuracy (the first such): what the official code prints."""
        return 1 + max(range(len(self.test_acc)), key=lambda i: (self.test_acc[i], -i))


@torch.no_grad()
def encode(encoder: nn.Module, loader: DataLoader, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    feats, labels = [], []
    for x, y, *_ in loader:
        feats.append(encoder(x.to(device)))
        labels.append(y.to(device))
    return torch.cat(feats), torch.cat(labels)


def train_on_views(
    encoder: nn.Module,
    train_set: Dataset,
    test_loader: DataLoader | None,
    num_classes: int,
    cfg: ProbeConfig,
    seed: int,
    device: torch.device,
    progress: Callable[[int, str], AbstractContextManager[Any]] | None = None,
) -> Stage2Result:
    """Train the classifier on ``crop_flip`` views through the frozen ``encoder``; test after each epoch."""
    encoder.eval()
    gen = torch.Generator().manual_seed(seed)  # shuffling and crops
    loader = DataLoader(train_set, batch_size=cfg.batch_size, shuffle=True, generator=gen)
    labels = getattr(train_set, "labels", None)
    if labels is None:
        labels = torch.as_tensor([int(train_set[i][1]) for i in range(len(train_set))])  # type: ignore[arg-type]
    counts = torch.bincount(labels, minlength=num_classes).tolist()
    test = encode(encoder, test_loader, device) if test_loader is not None else None
    with torch.no_grad():
        feat_dim = encoder(train_set[0][0][None].to(device)).shape[1]
    torch.manual_seed(seed)
    head = NormedLinear(feat_dim, num_classes) if cfg.loss == "ldam_drw" else nn.Linear(feat_dim, num_classes)
    head = head.to(device)
    opt = torch.optim.SGD(head.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    margins = ldam_margins(counts, cfg.max_margin).to(device)
    drw = effective_number_weights(counts, cfg.beta).to(device)
    balanced = balanced_weights(counts).to(device) if cfg.loss == "balanced" else None
    lr_at = step_lr if cfg.schedule == "step" else cosine_lr
    accs: list[float] = []
    bar_cm = progress(cfg.epochs, "stage 2") if progress is not None else nullcontext()
    with bar_cm as bar:
        for epoch in range(cfg.epochs):
            for group in opt.param_groups:
                group["lr"] = lr_at(epoch, cfg)
            head.train()
            for x, y, *_ in loader:
                x, y = x.to(device), y.to(device)
                with torch.no_grad():
                    feats = encoder(crop_flip(x, cfg.pad, gen))
                out = head(feats)
                if cfg.loss == "ldam_drw":
                    loss = ldam_loss(out, y, margins, cfg.scale, drw if epoch >= cfg.drw_epoch else None)
                else:
                    loss = F.cross_entropy(out, y, weight=balanced)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            if test is not None:
                head.eval()
                with torch.no_grad():
                    accs.append(float((head(test[0]).argmax(1) == test[1]).float().mean()))
            if bar is not None:
                bar.update(info=f"test acc {accs[-1]:.3f}" if accs else None)
    return Stage2Result(head.eval(), accs)
