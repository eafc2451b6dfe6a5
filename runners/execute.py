"""One run, end to end: validate, seed, build the plugin, run it with its runner, write results.json."""

from __future__ import annotations

import logging
import os
import traceback
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig

from runners.context import RunContext
from runners.fit_runner import run_fit
from runners.loggers import build_loggers, close_loggers, wandb_run_dir
from runners.loop_runner import run_loop
from runners.pipeline_runner import run_pipeline
from runners.results import ResultsSink
from runners.validate import check_schemas

log = logging.getLogger("reprolab")

RUNNERS = {"fit": run_fit, "loop": run_loop, "pipeline": run_pipeline}


def _output_dir_and_overrides() -> tuple[Path, list[str]]:
    if HydraConfig.initialized():
        hc = HydraConfig.get()
        return Path(hc.runtime.output_dir), list(hc.overrides.task)
    return Path(os.getcwd()), []


def _configure_threads(num_threads: int) -> None:
    import torch

    if num_threads > 0:
        torch.set_num_threads(num_threads)


def _forget_progress(out_dir: Path) -> None:
    """rerun=true starts over: the resumable state of the finished run (its checkpoints, the pipeline's
    finished stages) would otherwise just replay the old result."""
    import shutil

    for name in ("checkpoint.pt", "last.ckpt", "checkpoints", "stages"):
        path = out_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    log.info("rerun=true: starting %s over", out_dir)


def execute(cfg: DictConfig, out_dir: Path | None = None) -> dict[str, float] | None:
    """Run ``cfg`` and return its final metrics (None when the run was already completed)."""
    from lightning.fabric.utilities.seed import seed_everything

    check_schemas(cfg)
    hydra_dir, overrides = _output_dir_and_overrides()
    out_dir = Path(out_dir or hydra_dir)
    sink = ResultsSink(out_dir, cfg, overrides)
    if sink.completed():
        if not cfg.rerun:
            log.info("already completed: %s (rerun=true to run it again)", sink.path)
            return None
        _forget_progress(out_dir)

    _configure_threads(cfg.hardware.num_threads)
    seed_everything(cfg.seed, workers=True, verbose=False)
    method = instantiate(cfg.method, _convert_="all")
    if method.kind not in RUNNERS:
        raise ValueError(f"{type(method).__name__}.kind={method.kind!r}; valid kinds: {', '.join(RUNNERS)}")

    name = f"{cfg.method.name}-{sink.record['env'] or sink.record['data'] or ''}-s{cfg.seed}".replace(
        "--", "-"
    )
    loggers = build_loggers(cfg, out_dir, name)
    ctx = RunContext(cfg=cfg, out_dir=out_dir, loggers=loggers)
    sink.write("running")
    status = "failed"
    try:
        metrics = RUNNERS[method.kind](method, ctx)
        status = "completed"
        sink.write(status, metrics, curves=ctx.curves)
    except BaseException as ex:
        status = "interrupted" if isinstance(ex, KeyboardInterrupt) else "failed"
        sink.write(status, curves=ctx.curves, error="".join(traceback.format_exception(ex)))
        raise
    finally:
        wandb_dir = wandb_run_dir(loggers)
        close_loggers(loggers, "success" if status == "completed" else "failed")
    log.info("results: %s", sink.path)
    if wandb_dir:
        log.info("W&B offline run: %s (upload with `wandb sync %s`)", wandb_dir, wandb_dir)
    return metrics
