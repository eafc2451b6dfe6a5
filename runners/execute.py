"""One run, end to end: validate, seed, build the plugin, run it with its runner, write results.json."""

from __future__ import annotations

import logging
import os
import traceback
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig

from runners import fit_runner, loop_runner, pipeline_runner
from runners.context import RunContext
from runners.distributed import (
    RANK_JOB_ENV,
    WorkerFinished,
    adopt_submitit_local_ranks,
    is_global_zero,
    launch_episode,
    publish_job_for_ranks,
)
from runners.identity import check_identity, config_identity
from runners.loggers import build_loggers, close_loggers, wandb_run_dir
from runners.results import ResultsSink, error_message, read_results
from runners.run_lock import RunDirLock
from runners.validate import ConfigError, check_schemas

log = logging.getLogger("reprolab")

RUNNERS = {"fit": fit_runner.run_fit, "loop": loop_runner.run_loop, "pipeline": pipeline_runner.run_pipeline}
# Each kind's check that the run dir's resumable state was made with this config (runners.identity),
# run before anything is written, so a refused run leaves the dir as it found it.
RESUME_CHECKS = {
    "fit": fit_runner.check_resume,
    "loop": loop_runner.check_resume,
    "pipeline": pipeline_runner.check_resume,
}


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
    """rerun=true starts over: the resumable state of an earlier attempt (its checkpoints, the pipeline's
    finished stages) would otherwise replay the old result, or be refused as made with other settings."""
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
    adopt_submitit_local_ranks()  # before any rank check: a submitit-local task learns its rank
    hydra_dir, overrides = _output_dir_and_overrides()
    out_dir = Path(out_dir or hydra_dir)
    try:
        check_schemas(cfg)
    except ConfigError as ex:  # a sweep job refused by its schema is recorded as failed, with the reason
        if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN and is_global_zero():
            ResultsSink(out_dir, cfg, overrides).write("failed", error=str(ex), error_message=str(ex))
        raise
    if not is_global_zero():  # a rank the ddp launcher started inside rank 0's run: rank 0 owns the dir
        return _execute_worker(cfg, out_dir)
    if not (HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN):
        with RunDirLock(out_dir):  # one run per dir; the OS drops the lock when this process ends
            return _execute_locked(cfg, out_dir, overrides)
    # A sweep job is one launch episode: the ranks Lightning launches run this job only, and leave with it.
    with launch_episode(RANK_JOB_ENV), RunDirLock(out_dir):
        publish_job_for_ranks(overrides, str(out_dir))
        return _execute_locked(cfg, out_dir, overrides)


def _execute_worker(cfg: DictConfig, out_dir: Path) -> dict[str, float] | None:
    """Ranks other than 0 of a distributed run: the same seeding, plugin and runner as rank 0, but no lock,
    no results record, no loggers (so no second W&B run) and no clean-up: rank 0 did those for the run."""
    from lightning.fabric.utilities.seed import seed_everything

    _configure_threads(cfg.hardware.num_threads)
    seed_everything(cfg.seed, workers=True, verbose=False)
    method = instantiate(cfg.method, _convert_="all")
    if method.kind not in RUNNERS:
        raise ValueError(f"{type(method).__name__}.kind={method.kind!r}; valid kinds: {', '.join(RUNNERS)}")
    try:
        return RUNNERS[method.kind](method, RunContext(cfg=cfg, out_dir=out_dir))
    except WorkerFinished:  # this rank's fit is done; rank 0 carries on alone (runners.distributed)
        return None


def _execute_locked(cfg: DictConfig, out_dir: Path, overrides: list[str]) -> dict[str, float] | None:
    from lightning.fabric.utilities.seed import seed_everything

    identity = config_identity(cfg)
    sink = ResultsSink(out_dir, cfg, overrides)
    sink.record["config_identity"] = identity
    if sink.completed() and not cfg.rerun:
        stored = (read_results(sink.path) or {}).get("config_identity")
        if stored is not None:  # records from before identities existed are taken as they are
            check_identity(str(sink.path), stored, identity)
        log.info("already completed: %s (rerun=true to run it again)", sink.path)
        return None
    if cfg.rerun:
        _forget_progress(out_dir)

    _configure_threads(cfg.hardware.num_threads)
    seed_everything(cfg.seed, workers=True, verbose=False)
    method = instantiate(cfg.method, _convert_="all")
    if method.kind not in RUNNERS:
        raise ValueError(f"{type(method).__name__}.kind={method.kind!r}; valid kinds: {', '.join(RUNNERS)}")
    ctx = RunContext(cfg=cfg, out_dir=out_dir)
    RESUME_CHECKS[method.kind](method, ctx)

    name = f"{cfg.method.name}-{sink.record['env'] or sink.record['data'] or ''}-s{cfg.seed}".replace(
        "--", "-"
    )
    loggers = build_loggers(cfg, out_dir, name)
    ctx.loggers = loggers
    sink.write("running")
    status = "failed"
    try:
        metrics = RUNNERS[method.kind](method, ctx)
        status = "completed"
        sink.write(status, metrics, curves=ctx.curves)
    except BaseException as ex:
        status = "interrupted" if isinstance(ex, KeyboardInterrupt) else "failed"
        trace = "".join(traceback.format_exception(ex))
        sink.write(status, curves=ctx.curves, error=trace, error_message=error_message(ex))
        raise
    finally:
        wandb_dir = wandb_run_dir(loggers)
        close_loggers(loggers, "success" if status == "completed" else "failed")
    log.info("results: %s", sink.path)
    if wandb_dir:
        log.info("W&B offline run: %s (upload with `wandb sync %s`)", wandb_dir, wandb_dir)
    return metrics
