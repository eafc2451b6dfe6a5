"""The frozen diffusion U-Net: trained offline on the training split (cached on disk, trained once per
sweep), randomly initialised (a baseline), or a diffusers hub checkpoint for online users."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from data.cache import cache_dir
from methods.diffusion_cls.config import DDPMTrainConfig

log = logging.getLogger("reprolab")


def build_unet(model_cfg: dict[str, Any]) -> Any:
    from diffusers import UNet2DModel

    n = len(model_cfg["block_out_channels"])
    return UNet2DModel(
        sample_size=model_cfg["sample_size"],
        in_channels=model_cfg["in_channels"],
        out_channels=model_cfg["in_channels"],
        block_out_channels=tuple(model_cfg["block_out_channels"]),
        layers_per_block=model_cfg["layers_per_block"],
        down_block_types=("DownBlock2D",) * n,
        up_block_types=("UpBlock2D",) * n,
        norm_num_groups=model_cfg["norm_num_groups"],
    )


def to_model_space(images: torch.Tensor, sample_size: int, channels: int) -> torch.Tensor:
    """[0, 1] images → [−1, 1] at the U-Net's resolution and channel count."""
    x = images
    if x.shape[-1] != sample_size:
        x = F.interpolate(x, size=(sample_size, sample_size), mode="bilinear", align_corners=False)
    if x.shape[1] != channels:
        x = x.mean(dim=1, keepdim=True).expand(-1, channels, -1, -1)
    return x * 2 - 1


def checkpoint_key(model_cfg: dict[str, Any], train_cfg: DDPMTrainConfig, data_id: str, seed: int) -> str:
    blob = json.dumps(
        {
            "model": model_cfg,
            "steps": train_cfg.steps,
            "bs": train_cfg.batch_size,
            "lr": train_cfg.lr,
            "data": data_id,
            "seed": seed,
        },
        sort_keys=True,
    )
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def train_ddpm(
    unet: Any,
    images: torch.Tensor,
    cfg: DDPMTrainConfig,
    seed: int,
    progress: Any = None,
    device: torch.device | str = "cpu",
) -> float:
    """ε-prediction DDPM training (Ho et al. 2020, L_simple) with AdamW on ``device`` (the runner's,
    ``ctx.device``); returns the last 100 steps' loss.

    Runs on its own copy of torch's CPU RNG: training happens only when the checkpoint is not cached, so
    drawing from the caller's RNG would make everything after it depend on the cache being warm. Indices,
    noise and timesteps are drawn on the CPU (the same numbers on any device), then moved."""
    with torch.random.fork_rng(devices=[]):
        return _train_ddpm(unet, images, cfg, seed, progress, device)


def _train_ddpm(
    unet: Any, images: torch.Tensor, cfg: DDPMTrainConfig, seed: int, progress: Any, device: Any
) -> float:
    from diffusers import DDPMScheduler

    sched = DDPMScheduler(num_train_timesteps=1000)
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    unet.to(device)
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.lr)
    lr_sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps)
    unet.train()
    losses = []
    for step in range(cfg.steps):
        idx = torch.randint(len(images), (cfg.batch_size,), generator=g)
        x0 = images[idx]
        noise = torch.randn(x0.shape, generator=g)
        t = torch.randint(0, 1000, (len(x0),), generator=g)
        x0, noise, t = x0.to(device), noise.to(device), t.to(device)
        loss = F.mse_loss(unet(sched.add_noise(x0, noise, t), t).sample, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        lr_sched.step()
        losses.append(float(loss.detach()))
        if progress is not None and ((step + 1) % 50 == 0 or step + 1 == cfg.steps):
            progress(step + 1, losses[-1])
    unet.eval()
    return float(sum(losses[-100:]) / len(losses[-100:]))


def cache_folder(train_cfg: DDPMTrainConfig) -> Path:
    """The method's cache (checkpoints in ddpm/, features in features/): ``method.ddpm.cache_dir``, or the
    shared cache root's diffusion_cls folder, so every launch directory finds the same checkpoints."""
    if train_cfg.cache_dir:
        return Path(train_cfg.cache_dir).expanduser().resolve()
    return cache_dir("diffusion_cls")


def checkpoint_path(model_cfg: dict[str, Any], train_cfg: DDPMTrainConfig, data_id: str, seed: int) -> Path:
    return cache_folder(train_cfg) / "ddpm" / f"{checkpoint_key(model_cfg, train_cfg, data_id, seed)}.pt"


def load_or_train(
    model_cfg: dict[str, Any],
    train_cfg: DDPMTrainConfig,
    images: torch.Tensor,
    data_id: str,
    seed: int,
    progress: Any = None,
    device: torch.device | str = "cpu",
) -> tuple[Any, str]:
    """(trained U-Net in eval mode on ``device``, checkpoint id). A file lock makes parallel jobs wait for
    one trainer; the OS releases it if that trainer is killed, so a crash never leaves later jobs waiting."""
    from filelock import FileLock

    key = checkpoint_key(model_cfg, train_cfg, data_id, seed)
    folder = cache_folder(train_cfg) / "ddpm"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{key}.pt"
    unet = build_unet(model_cfg)
    lock = folder / f"{key}.lock"
    with FileLock(str(lock)):
        if not path.exists():
            t0 = time.monotonic()
            final = train_ddpm(unet, images, train_cfg, seed, progress, device)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            torch.save(
                {"state_dict": unet.state_dict(), "final_loss": final, "seconds": time.monotonic() - t0}, tmp
            )
            os.replace(tmp, path)
            log.info("trained DDPM %s in %.0f s (final loss %.4f)", key, time.monotonic() - t0, final)
    # Safe to remove once the checkpoint exists: any job that still takes the lock finds it and loads.
    lock.unlink(missing_ok=True)
    state = torch.load(path, map_location="cpu", weights_only=True)
    unet.load_state_dict(state["state_dict"])
    return unet.to(device).eval(), f"ddpm-{key}"


def load_hub(name: str) -> tuple[Any, str]:
    """A pretrained diffusers U-Net: a hub id (e.g. google/ddpm-cifar10-32) or a local save_pretrained
    folder in the same layout."""
    from diffusers import UNet2DModel

    return UNet2DModel.from_pretrained(name).eval(), f"hub-{name.replace('/', '--')}"


def random_like(unet: Any, seed: int) -> tuple[Any, str]:
    """The random-U-Net baseline for a given U-Net: the same architecture (its full config), freshly
    initialised from ``seed``, never trained; with its cache id (seed + a hash of the config)."""
    cls = type(unet)
    config = {k: v for k, v in dict(unet.config).items() if not k.startswith("_")}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = cls.from_config(config)
    arch = hashlib.sha1(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return fresh.eval(), f"random-{seed}-{arch}"
