"""SBCL / SupCon / CE as a ``fit`` method: data and encoder from the config groups; SBCLModule trains."""

from __future__ import annotations

import logging
from typing import Any

from data.vision.datamodule import ImageDataModule
from data.vision.encoders import build_encoder
from data.vision.options import AugmentConfig, ProbeConfig
from data.vision.sources import load_splits
from methods.sbcl.config import SBCLConfig
from methods.sbcl.module import SBCLModule
from runners.context import RunContext
from runners.contract import FitMethod

log = logging.getLogger("reprolab")


class SBCL(FitMethod):
    def __init__(self, **cfg: Any) -> None:
        augment = AugmentConfig(**cfg.pop("augment", {}))
        probe = ProbeConfig(**cfg.pop("probe", {}))
        self.cfg = SBCLConfig(**cfg, augment=augment, probe=probe)

    def build(self, ctx: RunContext) -> tuple[SBCLModule, ImageDataModule]:
        data_cfg = ctx.cfg.data
        if data_cfg is None:
            raise ValueError("method=sbcl needs image data: data=digits_lt|mnist5k_lt|cifar10_lt|cifar100_lt")
        train, test = load_splits(data_cfg, ctx.seed)
        counts = train.class_counts()
        x0 = train[0][0] if not hasattr(train, "images") else train.images[0]
        encoder, feat_dim = build_encoder(ctx.cfg.model, tuple(x0.shape))
        log.info("train class counts %s; subclasses per class appear after warm-up", counts)
        module = SBCLModule(
            self.cfg, encoder, feat_dim, counts, ctx.seed, curve=lambda m, s: ctx.log(m, s, True)
        )
        dm = ImageDataModule(train, test, self.cfg.batch_size, self.cfg.num_workers, seed=ctx.seed)
        return module, dm

    def trainer_kwargs(self, ctx: RunContext) -> dict[str, Any]:
        return {
            "max_epochs": self.cfg.epochs,
            "log_every_n_steps": 1,
            "enable_model_summary": False,
            "num_sanity_val_steps": 0,
        }

    def final_metrics(
        self, fit_metrics: dict[str, float], test_metrics: dict[str, float]
    ) -> dict[str, float]:
        keep = {k: v for k, v in fit_metrics.items() if not k.endswith("_step")}
        return {**{k.removesuffix("_epoch"): v for k, v in keep.items()}, **test_metrics}
