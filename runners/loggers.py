"""The run's loggers: Lightning logger objects, used unchanged by Trainer (fit) and Fabric (loop)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf


def build_loggers(cfg: DictConfig, out_dir: Path, run_name: str) -> list[Any]:
    """W&B is offline unless WANDB_MODE=online; WANDB_MODE=disabled turns it off entirely (tests)."""
    kind = cfg.logger.kind
    if kind == "csv":
        from lightning.pytorch.loggers import CSVLogger

        return [CSVLogger(save_dir=str(out_dir), name="csv", version="")]
    if kind == "wandb":
        mode = os.environ.get("WANDB_MODE", "offline")
        if mode == "disabled":
            return []
        from lightning.pytorch.loggers import WandbLogger

        from runners.results import scrub_secrets

        return [
            WandbLogger(
                name=run_name,
                project=cfg.logger.project,
                entity=cfg.logger.entity,
                group=cfg.logger.group,
                tags=list(cfg.logger.tags),
                save_dir=str(out_dir),
                offline=mode != "online",
                config=scrub_secrets(OmegaConf.to_container(cfg, resolve=True)),
            )
        ]
    return []


def wandb_run_dir(loggers: list[Any]) -> str | None:
    for logger in loggers:
        experiment = getattr(logger, "_experiment", None)
        if experiment is not None and getattr(experiment, "dir", None):
            return str(Path(experiment.dir).parent)
    return None


def close_loggers(loggers: list[Any], status: str) -> None:
    """Finalize every logger and end the W&B run, so the next job of a multirun gets its own run."""
    for logger in loggers:
        logger.finalize(status)
    if any(type(logger).__name__ == "WandbLogger" for logger in loggers):
        import wandb

        wandb.finish()
