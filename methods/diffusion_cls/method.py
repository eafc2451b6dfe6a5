"""Diffusion features for classification (arXiv 2307.08702) as a ``fit`` method: build the features (or the
CNN baseline), then the fit runner trains the probe and tests it."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf

from data.config import ImageDataConfig
from data.features import standardize as shared_standardize
from data.sampling import few_shot_indices, stratified_split
from data.vision.datamodule import ImageDataModule
from data.vision.datasets import ImageSet, load_image_splits
from data.vision.encoders import SmallCNN
from methods.diffusion_cls.config import DDPMTrainConfig, DiffusionClsConfig
from methods.diffusion_cls.ddpm import build_unet, checkpoint_path, load_hub, load_or_train, to_model_space
from methods.diffusion_cls.features import FeatureCache
from methods.diffusion_cls.heads import AttentionHead, LinearHead
from methods.diffusion_cls.module import ProbeModule
from runners.context import RunContext
from runners.contract import FitMethod

log = logging.getLogger("reprolab")


def standardize(train: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    """Per-dimension z-scores with the training features' statistics (a probe on raw activations whose
    scales differ by orders of magnitude across blocks and timesteps would need a per-cell lr)."""
    flat = shared_standardize(train, *others, abs_floor=1e-8, rel_floor=1e-2)
    return [z.view_as(x) for z, x in zip(flat, (train, *others), strict=True)]


class DiffusionCls(FitMethod):
    def __init__(self, **cfg: Any) -> None:
        ddpm = DDPMTrainConfig(**cfg.pop("ddpm", {}))
        self.cfg = DiffusionClsConfig(**cfg, ddpm=ddpm)
        self.cache_stats: dict[str, float] = {}

    # ------------------------------------------------------------------ the frozen U-Net and its features

    def unet(self, ctx: RunContext, train_images: torch.Tensor, data_id: str) -> tuple[Any, str, dict]:
        cfg = self.cfg
        model_cfg = OmegaConf.to_container(ctx.cfg.model, resolve=True)
        model_cfg.pop("name", None)
        if cfg.features == "random_unet":
            torch.manual_seed(ctx.seed)
            arch = hashlib.sha1(json.dumps(model_cfg, sort_keys=True).encode()).hexdigest()[:12]
            return build_unet(model_cfg).eval(), f"random-{ctx.seed}-{arch}", model_cfg
        if cfg.unet_source == "hub":
            unet, ckpt = load_hub(cfg.hub_name)
            return (
                unet,
                ckpt,
                {"sample_size": unet.config.sample_size, "in_channels": unet.config.in_channels},
            )
        x = to_model_space(train_images, model_cfg["sample_size"], model_cfg["in_channels"])
        done = [0]

        def report(step: int, loss: float) -> None:
            bar.update(advance=step - done[0], info=f"loss {loss:.3f}")
            done[0] = step

        if checkpoint_path(model_cfg, cfg.ddpm, data_id, seed=0).exists():
            unet, ckpt = load_or_train(model_cfg, cfg.ddpm, x, data_id, seed=0)
        else:
            with ctx.progress(cfg.ddpm.steps, "train DDPM (cached after this run)") as bar:
                unet, ckpt = load_or_train(model_cfg, cfg.ddpm, x, data_id, seed=0, progress=report)
        return unet, ckpt, model_cfg

    def unet_features(
        self, ctx: RunContext, train: ImageSet, test: ImageSet, data_id: str
    ) -> list[torch.Tensor]:
        cfg = self.cfg
        unet, ckpt, model_cfg = self.unet(ctx, train.images, data_id)
        cache = FeatureCache(f"{cfg.ddpm.cache_dir}/features")
        device = (
            "cuda" if ctx.cfg.hardware.accelerator in ("gpu", "cuda") and torch.cuda.is_available() else "cpu"
        )
        out = []
        for name, part in (("train", train), ("test", test)):
            x = to_model_space(part.images, model_cfg["sample_size"], model_cfg["in_channels"])
            out.append(
                cache.get(
                    unet, ckpt, x, f"{data_id}-{name}", cfg.block, cfg.t, cfg.pooling, cfg.noise_seed, device
                )
            )
        self.cache_stats = {"feature_cache_hits": cache.hits, "feature_cache_misses": cache.misses}
        return out

    # ------------------------------------------------------------------ FitMethod

    def build(self, ctx: RunContext) -> tuple[ProbeModule, ImageDataModule]:
        cfg = self.cfg
        data_cfg = ctx.cfg.data or OmegaConf.structured(ImageDataConfig(name="digits"))
        train, test = load_image_splits(data_cfg, ctx.seed)
        data_id = (
            f"{data_cfg.name}-r{data_cfg.imbalance_ratio}-f{data_cfg.test_fraction}-s{data_cfg.split_seed}"
        )
        if data_cfg.imbalance_ratio > 1:  # the long-tailed cut depends on the run seed
            data_id += f"-seed{ctx.seed}"
        if cfg.features in ("unet", "random_unet"):
            f_train, f_test = self.unet_features(ctx, train, test, data_id)
        else:
            f_train, f_test = train.images, test.images
        labels = train.labels.numpy()
        if cfg.val_fraction:
            pool, val_idx = stratified_split(labels, cfg.val_fraction, data_cfg.split_seed)
        else:
            pool, val_idx = np.arange(len(labels)), None
        pick = pool if not cfg.shots else pool[few_shot_indices(labels[pool], cfg.shots, ctx.seed)]
        pick = torch.as_tensor(pick)
        x_train, y_train = f_train[pick], train.labels[pick]
        x_val = f_train[torch.as_tensor(val_idx)] if val_idx is not None else None
        if cfg.standardize and cfg.features != "cnn":
            x_train, x_test, *rest = standardize(x_train, f_test, *([x_val] if x_val is not None else []))
            x_val = rest[0] if rest else None
        else:
            x_test = f_test
        val = (x_val, train.labels[torch.as_tensor(val_idx)]) if x_val is not None else None
        module = ProbeModule(cfg, *self.head(x_train.shape[1:], train.num_classes), val=val)
        log.info(
            "probe on %s features %s: %d labelled, %d test",
            cfg.features,
            tuple(x_train.shape[1:]),
            len(pick),
            len(x_test),
        )
        dm = ImageDataModule(
            ImageSet(x_train, y_train, train.num_classes),
            ImageSet(x_test, test.labels, test.num_classes),
            cfg.batch_size,
            seed=ctx.seed,
            drop_last=False,
        )
        return module, dm

    def head(
        self, shape: tuple[int, ...], num_classes: int
    ) -> tuple[torch.nn.Module, torch.nn.Module | None]:
        cfg = self.cfg
        if cfg.features == "cnn":
            enc = SmallCNN(shape[0], list(cfg.cnn_channels))
            return LinearHead(enc.out_dim, num_classes), enc
        if cfg.head == "attention":
            c, h, w = shape
            dim = cfg.attention_dim
            return AttentionHead(c, h * w, num_classes, dim, cfg.attention_heads, cfg.attention_layers), None
        in_dim = 1
        for s in shape:
            in_dim *= s
        return LinearHead(in_dim, num_classes), None

    def trainer_kwargs(self, ctx: RunContext) -> dict[str, Any]:
        return {"max_epochs": self.cfg.epochs, "enable_model_summary": False, "log_every_n_steps": 1}

    def final_metrics(
        self, fit_metrics: dict[str, float], test_metrics: dict[str, float]
    ) -> dict[str, float]:
        keep = {k.removesuffix("_epoch"): v for k, v in fit_metrics.items() if not k.endswith("_step")}
        return {**keep, **test_metrics, **self.cache_stats}
