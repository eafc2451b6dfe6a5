"""The probe as a LightningModule: a head on cached features, or (the supervised baseline) a CNN plus a
linear head trained end to end on the same labelled images. Optimiser as in the paper: SGD (momentum 0 by
default), StepLR(lr_step, 0.1)."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn

from methods.diffusion_cls.config import DiffusionClsConfig


class ProbeModule(pl.LightningModule):
    def __init__(
        self,
        cfg: DiffusionClsConfig,
        head: nn.Module,
        encoder: nn.Module | None = None,
        val: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        self.cfg, self.head, self.encoder = cfg, head, encoder
        self.val = val
        self._correct = self._total = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x) if self.encoder is not None else x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y, _ = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train_loss", loss, on_epoch=True, on_step=False)
        return loss

    def on_train_epoch_end(self) -> None:
        if self.val is not None and self.current_epoch == self.trainer.max_epochs - 1:
            was = self.training
            self.eval()
            with torch.no_grad():
                x, y = self.val
                pred = torch.cat(
                    [self(x[i : i + 512].to(self.device)).argmax(1).cpu() for i in range(0, len(x), 512)]
                )
            self.train(was)
            self.log("val_acc", (pred == y).float().mean())

    def configure_optimizers(self) -> Any:
        cfg = self.cfg
        opt = torch.optim.SGD(
            self.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
        return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.StepLR(opt, cfg.lr_step, 0.1)}

    def test_step(self, batch: Any, batch_idx: int) -> None:
        x, y, _ = batch
        self._correct += int((self(x).argmax(1) == y).sum())
        self._total += len(y)

    def on_test_epoch_end(self) -> None:
        self.log("test_acc", self._correct / max(1, self._total))
        self._correct = self._total = 0
