"""SBCL / SupCon / CE as a ``fit`` method: data and encoder from the config groups; SBCLModule trains."""

from __future__ import annotations

import logging
from typing import Any

from omegaconf import OmegaConf

from data.vision.datamodule import ImageDataModule
from data.vision.encoders import build_encoder
from data.vision.imbalance_cifar import imbalance_cifar_indices
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
        train, test = self.load_data(data_cfg, ctx.seed)
        counts = train.class_counts()
        x0 = train[0][0] if not hasattr(train, "images") else train.images[0]
        encoder, feat_dim = build_encoder(ctx.cfg.model, tuple(x0.shape))
        log.info("train class counts %s; subclasses per class appear after warm-up", counts)
        module = SBCLModule(
            self.cfg,
            encoder,
            feat_dim,
            counts,
            ctx.seed,
            curve=lambda m, s: ctx.log(m, s, True),
            progress=ctx.progress,
        )
        dm = ImageDataModule(train, test, self.cfg.batch_size, self.cfg.num_workers, seed=ctx.seed)
        return module, dm

    def load_data(self, data_cfg: Any, seed: int) -> tuple[Any, Any]:
        """(train, test). ``lt_subset=official``: the balanced set loaded, then the official fixed
        long-tailed subset cut from it (data.vision.imbalance_cifar), the same for every run seed."""
        ratio = float(data_cfg.get("imbalance_ratio", 1) or 1)
        if self.cfg.lt_subset != "official" or ratio <= 1 or "train_list" in data_cfg:
            return load_splits(data_cfg, seed)
        balanced = OmegaConf.merge(data_cfg, {"imbalance_ratio": 1})
        train, test = load_splits(balanced, seed)
        keep = imbalance_cifar_indices(train.labels.numpy(), ratio, self.cfg.lt_rand_number)
        return train.subset(keep), test

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
