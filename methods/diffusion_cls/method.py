"""Diffusion features for classification (arXiv 2307.08702) as a ``fit`` method: build the features (or the
CNN baseline), then the fit runner trains the probe and tests it."""

from __future__ import annotations

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
from data.vision.lazy_images import LazyImages
from methods.diffusion_cls.adm import checkpoint_file, load_adm
from methods.diffusion_cls.config import ADMConfig, DDPMTrainConfig, DiffusionClsConfig
from methods.diffusion_cls.ddpm import (
    build_unet,
    cache_folder,
    checkpoint_path,
    load_hub,
    load_or_train,
    random_like,
    to_model_space,
)
from methods.diffusion_cls.features import FeatureCache
from methods.diffusion_cls.heads import AttentionHead, LinearHead, OfficialAttentionHead
from methods.diffusion_cls.module import OnlineProbeModule, ProbeModule
from methods.diffusion_cls.protocol import OnlineFeatures
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
        adm = ADMConfig(**cfg.pop("adm", {}))
        self.cfg = DiffusionClsConfig(**cfg, ddpm=ddpm, adm=adm)
        self.cache_stats: dict[str, float] = {}

    # ------------------------------------------------------------------ the frozen U-Net and its features

    def unet(self, ctx: RunContext, train_images: torch.Tensor, data_id: str) -> tuple[Any, str, dict]:
        """(frozen U-Net, checkpoint id, its input spec). The random-U-Net baseline is the architecture of
        the U-Net the run would otherwise use — the hub / local checkpoint's config, or model=… for the
        offline DDPM — freshly initialised from the run seed, never trained."""
        cfg = self.cfg
        if cfg.unet_source in ("hub", "adm"):
            if cfg.unet_source == "hub":
                unet, ckpt = load_hub(cfg.hub_name)
            else:
                unet, ckpt = load_adm(cfg.adm, cache_folder(cfg.ddpm))
            spec = {"sample_size": unet.config.sample_size, "in_channels": unet.config.in_channels}
            if cfg.features == "random_unet":
                unet, ckpt = random_like(unet, ctx.seed)
            return unet, ckpt, spec
        model_cfg = OmegaConf.to_container(ctx.cfg.model, resolve=True)
        model_cfg.pop("name", None)
        if cfg.features == "random_unet":
            unet, ckpt = random_like(build_unet(model_cfg), ctx.seed)
            return unet, ckpt, model_cfg
        x = to_model_space(train_images, model_cfg["sample_size"], model_cfg["in_channels"])
        done = [0]

        def report(step: int, loss: float) -> None:
            bar.update(advance=step - done[0], info=f"loss {loss:.3f}")
            done[0] = step

        if checkpoint_path(model_cfg, cfg.ddpm, data_id, seed=0).exists():
            unet, ckpt = load_or_train(model_cfg, cfg.ddpm, x, data_id, seed=0, device=ctx.device)
        else:
            with ctx.progress(cfg.ddpm.steps, "train DDPM (cached after this run)") as bar:
                unet, ckpt = load_or_train(
                    model_cfg, cfg.ddpm, x, data_id, seed=0, progress=report, device=ctx.device
                )
        return unet, ckpt, model_cfg

    def unet_features(
        self, ctx: RunContext, train: ImageSet, test: ImageSet, data_id: str
    ) -> list[torch.Tensor]:
        cfg = self.cfg
        unet, ckpt, model_cfg = self.unet(ctx, train.images, data_id)
        cache = FeatureCache(cache_folder(cfg.ddpm) / "features")
        device = ctx.device  # the runner's (issue 16): feature extraction runs outside Lightning
        out = []
        for name, part in (("train", train), ("test", test)):
            x = to_model_space(part.images, model_cfg["sample_size"], model_cfg["in_channels"])
            out.append(
                cache.get(
                    unet,
                    ckpt,
                    x,
                    f"{data_id}-{name}",
                    cfg.block,
                    cfg.t,
                    cfg.pooling,
                    cfg.noise_seed,
                    device,
                    also=cfg.cache_blocks,
                )
            )
        self.cache_stats = {"feature_cache_hits": cache.hits, "feature_cache_misses": cache.misses}
        return out

    # ------------------------------------------------------------------ FitMethod

    def check_lazy(self, data_cfg: Any) -> None:
        """What needs the images in memory refuses a set decoded per item (data.image_size) at once."""
        cfg = self.cfg
        if not data_cfg.get("image_size") or cfg.features not in ("unet", "random_unet"):
            return
        if cfg.probe_protocol == "cached":
            raise ValueError(
                "method.probe_protocol=cached stores features of every image in memory; "
                f"data={data_cfg.name} is decoded per item (data.image_size): "
                "use method.probe_protocol=official"
            )
        if cfg.unet_source == "train" and cfg.features == "unet":
            raise ValueError(
                "method.unet_source=train trains a DDPM on in-memory images; "
                f"data={data_cfg.name} is decoded per item (data.image_size): "
                "use method.unet_source=adm (the paper's) or hub"
            )

    def build(self, ctx: RunContext) -> tuple[ProbeModule, ImageDataModule]:
        cfg = self.cfg
        data_cfg = ctx.cfg.data or OmegaConf.structured(ImageDataConfig(name="digits"))
        self.check_lazy(data_cfg)
        if cfg.unet_source == "adm" and cfg.features in ("unet", "random_unet"):
            checkpoint_file(cfg.adm, cache_folder(cfg.ddpm))  # a missing file or failed download: now
        train, test = load_image_splits(data_cfg, ctx.seed)
        lazy = isinstance(train, LazyImages)
        data_id = (
            f"{data_cfg.name}-r{data_cfg.imbalance_ratio}-f{data_cfg.test_fraction}-s{data_cfg.split_seed}"
        )
        if data_cfg.imbalance_ratio > 1:  # the long-tailed cut depends on the run seed
            data_id += f"-seed{ctx.seed}"
        online = None  # the official protocol's per-forward features
        if cfg.features in ("unet", "random_unet"):
            # The features come from a cache or are made now (DDPM training seeds and draws from torch's
            # global RNG; so do the random U-Net's and every U-Net's init). With its own copy of the RNG
            # the probe after it starts from the same state, cold cache or warm: same seed, same numbers.
            with torch.random.fork_rng(devices=[]):
                if cfg.probe_protocol == "official":
                    unet, _, spec = self.unet(ctx, None if lazy else train.images, data_id)
                    online = OnlineFeatures(unet, spec, cfg.block, cfg.t, cfg.pooling, cfg.crop_min)
                    f_train, f_test = (train, test) if lazy else (train.images, test.images)
                else:
                    f_train, f_test = self.unet_features(ctx, train, test, data_id)
        else:
            f_train, f_test = (train, test) if lazy else (train.images, test.images)
        labels = train.labels.numpy()
        if cfg.val_fraction:
            pool, val_idx = stratified_split(labels, cfg.val_fraction, data_cfg.split_seed)
        else:
            pool, val_idx = np.arange(len(labels)), None
        pick = pool if not cfg.shots else pool[few_shot_indices(labels[pool], cfg.shots, ctx.seed)]
        pick = torch.as_tensor(pick)
        if lazy:  # the images stay on disk: the probe's sets are row selections of the lazy set
            x_train, y_train = train.subset(pick.numpy()), train.labels[pick]
            x_val = train.subset(val_idx) if val_idx is not None else None
        else:
            x_train, y_train = f_train[pick], train.labels[pick]
            x_val = f_train[torch.as_tensor(val_idx)] if val_idx is not None else None
        if cfg.standardize and cfg.features != "cnn" and not lazy:
            x_train, x_test, *rest = standardize(x_train, f_test, *([x_val] if x_val is not None else []))
            x_val = rest[0] if rest else None
        else:
            x_test = f_test
        val = (x_val, train.labels[torch.as_tensor(val_idx)]) if x_val is not None else None
        if online is not None:
            probe_g = torch.Generator().manual_seed(cfg.noise_seed)
            first = x_train.stack(range(2)) if lazy else x_train[:2]
            shape = tuple(online(first.to(ctx.device), probe_g, augment=False).shape[1:])
            head, _ = self.head(shape, train.num_classes)
            module = OnlineProbeModule(cfg, head, online, seed=ctx.seed, val=val)
        else:
            shape = tuple(x_train.image(0).shape) if lazy else tuple(x_train.shape[1:])
            module = ProbeModule(cfg, *self.head(shape, train.num_classes), val=val)
        log.info(
            "probe on %s features %s: %d labelled, %d test",
            f"{cfg.features} ({cfg.probe_protocol})" if online is not None else cfg.features,
            shape,
            len(pick),
            len(x_test),
        )
        dm = ImageDataModule(
            x_train if lazy else ImageSet(x_train, y_train, train.num_classes),
            x_test if lazy else ImageSet(x_test, test.labels, test.num_classes),
            cfg.batch_size,
            num_workers=cfg.num_workers,
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
        dim, heads, layers = cfg.attention_dim, cfg.attention_heads, cfg.attention_layers
        if cfg.head == "attention":
            c, h, w = shape
            return OfficialAttentionHead(c, (h, w), num_classes, dim, heads, layers, cfg.pooling), None
        if cfg.head == "attention_pos":
            c, h, w = shape
            return AttentionHead(c, h * w, num_classes, dim, heads, layers), None
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
