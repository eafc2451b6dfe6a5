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


def rows(x: Any, start: int, stop: int) -> torch.Tensor:
    """Rows [start, stop) of a tensor, or of a set decoded per item (data.vision.lazy_images)."""
    if isinstance(x, torch.Tensor):
        return x[start:stop]
    return x.stack(range(start, min(stop, len(x))))


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
                    [self(rows(x, i, i + 512).to(self.device)).argmax(1).cpu() for i in range(0, len(x), 512)]
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
        counts = torch.tensor([self._correct, self._total], dtype=torch.float64, device=self.device)
        if self.trainer.world_size > 1:  # ddp: every rank's share of the test set (issue 16)
            counts = self.trainer.strategy.reduce(counts, reduce_op="sum")
        self.log("test_acc", float(counts[0] / counts[1].clamp(min=1)))
        self._correct = self._total = 0


class OnlineProbeModule(ProbeModule):
    """The official protocol: the head on features made at every forward (methods/diffusion_cls/protocol.py)
    from the batch's images — augmented and freshly noised in training, fixed noise per batch at
    evaluation. The training generator is declared so that an exact resume continues its draws."""

    def __init__(
        self,
        cfg: DiffusionClsConfig,
        head: nn.Module,
        features: Any,
        seed: int,
        val: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> None:
        super().__init__(cfg, head, None, val)
        self.features = features  # not a submodule: the frozen U-Net stays out of checkpoints
        self.noise_generator = torch.Generator().manual_seed(seed)

    def generators(self) -> dict[str, torch.Generator]:
        return {"noise": self.noise_generator}

    def forward(self, x: torch.Tensor, eval_key: int | None = None) -> torch.Tensor:
        if eval_key is None and self.training:
            return self.head(self.features(x, self.noise_generator, augment=True))
        g = torch.Generator().manual_seed(self.cfg.noise_seed * 1_000_003 + (eval_key or 0))
        return self.head(self.features(x, g, augment=False))

    def on_train_epoch_end(self) -> None:
        if self.val is not None and self.current_epoch == self.trainer.max_epochs - 1:
            was = self.training
            self.eval()
            x, y, step = *self.val, self.cfg.batch_size
            with torch.no_grad():
                pred = torch.cat(
                    [
                        self(rows(x, i, i + step).to(self.device), eval_key=i // step).argmax(1).cpu()
                        for i in range(0, len(x), step)
                    ]
                )
            self.train(was)
            self.log("val_acc", (pred == y).float().mean())

    def test_step(self, batch: Any, batch_idx: int) -> None:
        x, y, _ = batch
        self._correct += int((self(x, eval_key=batch_idx).argmax(1) == y).sum())
        self._total += len(y)
