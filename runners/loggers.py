"""The run's loggers: Lightning logger objects, used unchanged by Trainer (fit) and Fabric (loop)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig


def _experiment_name() -> str | None:
    """The ``experiment=...`` choice of this run (None without one, or outside a Hydra app)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    return HydraConfig.get().runtime.choices.get("experiment") or None


def build_loggers(cfg: DictConfig, out_dir: Path, run_name: str) -> list[Any]:
    """W&B is offline unless WANDB_MODE=online; WANDB_MODE=disabled turns it off entirely (tests).

    The W&B run is created here, not on the first logged value (Lightning's WandbLogger is lazy), so every
    run has one, whatever its method logs. A sweep's runs share a group (``logger.group``, by default the
    experiment's name) and each run's job type is its method (``logger.job_type``, by default the method's
    name), so the W&B UI shows a table's runs together, split by method."""
    kind = cfg.logger.kind
    if kind == "csv":
        from lightning.pytorch.loggers import CSVLogger

        return [CSVLogger(save_dir=str(out_dir), name="csv", version="")]
    if kind == "wandb":
        mode = os.environ.get("WANDB_MODE", "offline")
        if mode == "disabled":
            return []
        from lightning.pytorch.loggers import WandbLogger

        from runners.results import scrubbed_config

        logger = WandbLogger(
            name=run_name,
            project=cfg.logger.project,
            entity=cfg.logger.entity,
            group=cfg.logger.get("group") or _experiment_name(),
            job_type=cfg.logger.get("job_type") or str(cfg.method.name),
            tags=list(cfg.logger.tags),
            save_dir=str(out_dir),
            offline=mode != "online",
            config=scrubbed_config(cfg),  # the same scrub as results.json's config
        )
        getattr(logger, "experiment", None)  # creates the run now (see the docstring)
        return [logger]
    return []


def log_numbers(ctx: Any, values: dict[str, Any], prefix: str, after: int) -> int:
    """Log the numeric entries of ``values`` (a pipeline stage's summary, the final metrics) through
    ``ctx.log`` under ``prefix``, at a step after ``after`` and after every curve point logged so far
    (W&B drops a step lower than its last); returns the step used, for the next call's ``after``."""
    numbers = {
        f"{prefix}{k}": float(v)
        for k, v in values.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }
    curve_steps = [int(point[0]) for points in ctx.curves.values() for point in points]
    step = max([after, *curve_steps]) + 1
    if numbers:
        ctx.log(numbers, step=step)
    return step


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
