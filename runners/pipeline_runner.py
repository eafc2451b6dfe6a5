"""Runs a ``pipeline`` method: stages in order, each one's summary saved so a re-run skips it.

``stages/<name>.json`` holds the stage's summary and the identity of the config keys it reads
(``Stage.reads``, runners.identity). A re-run reuses the finished stages at the front of the list whose
identity matches the current config, and refuses (before running anything) when one does not: that stage's
work was made with other settings. Once a stage runs, every later stage runs again too, since its inputs
(the earlier stages' artefacts) may have changed.

Exact resume: every stage starts from global RNGs seeded by (seed, stage name), so its randomness does not
depend on whether the stages before it ran in this process or in an earlier attempt, and each stage's
file keeps the curves logged so far, which a resumed run takes back.

Device contract: the stages get their device from ``ctx.device`` (runners.context, built from
``hardware``). Under a multi-process launch (a stage that fits with Lightning's ddp re-executes the run on
every rank) only rank 0 writes the stage files; the other ranks reuse rank 0's finished stages like any
re-run and compute the rest alongside it.
"""

from __future__ import annotations

import copy
import json
import logging
import random
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from runners.atomic import write_json_atomic
from runners.context import RunContext
from runners.contract import PipelineMethod, Stage
from runners.distributed import is_global_zero
from runners.identity import check_identity, config_identity
from runners.loggers import log_numbers

log = logging.getLogger("reprolab")

FORMAT = 2  # 1: the bare summary, without identity (refused on resume)


def _stage_file(ctx: RunContext, stage: Stage) -> Path:
    return ctx.out_dir / "stages" / f"{stage.name}.json"


def _stored(path: Path) -> tuple[dict[str, Any] | None, dict[str, Any], dict[str, Any]]:
    """(identity, summary, curves) of a finished stage; identity None for one saved before identities."""
    saved = json.loads(path.read_text())
    if isinstance(saved, dict) and saved.get("format") == FORMAT:
        return saved["identity"], saved["summary"], saved.get("curves", {})
    return None, saved, {}


def seed_stage(seed: int, name: str) -> None:
    """Seed python, numpy and torch (CPU and CUDA) for one stage, from the run seed and the stage name."""
    stage_seed = (seed * 1_000_003 + zlib.crc32(name.encode())) % 2**32
    random.seed(stage_seed)
    np.random.seed(stage_seed)
    torch.manual_seed(stage_seed)


def reusable_stages(method: PipelineMethod, ctx: RunContext) -> list[Stage]:
    """The finished stages at the front of the pipeline; raise ResumeRefused if one has other settings."""
    reused = []
    for stage in method.stages(ctx):
        path = _stage_file(ctx, stage)
        if not path.exists():
            break
        stored = _stored(path)[0]
        check_identity(str(path), stored, config_identity(ctx.cfg, stage.reads))
        reused.append(stage)
    return reused


def check_resume(method: PipelineMethod, ctx: RunContext) -> None:
    reusable_stages(method, ctx)


def run_pipeline(method: PipelineMethod, ctx: RunContext) -> dict[str, float]:
    reused = {stage.name for stage in reusable_stages(method, ctx)}
    log.info("pipeline device: %s (precision %s)", ctx.device, ctx.precision)
    summaries: dict[str, dict[str, Any]] = {}
    step = -1  # each stage's numeric summary goes to the run's loggers (W&B, csv) as <stage>/<key>
    for stage in method.stages(ctx):
        done = _stage_file(ctx, stage)
        if stage.name in reused:
            log.info("stage %s: done in an earlier attempt with the same settings, skipped", stage.name)
            _, summaries[stage.name], curves = _stored(done)
            ctx.curves.clear()
            ctx.curves.update(curves)
            step = log_numbers(ctx, summaries[stage.name], f"{stage.name}/", step)
            continue
        log.info("stage %s: running", stage.name)
        seed_stage(int(ctx.cfg.seed), stage.name)
        summaries[stage.name] = stage.fn(ctx)
        saved = {
            "format": FORMAT,
            "identity": config_identity(ctx.cfg, stage.reads),
            "summary": summaries[stage.name],
            "curves": copy.deepcopy(ctx.curves),
        }
        if is_global_zero():
            write_json_atomic(done, saved)
        step = log_numbers(ctx, summaries[stage.name], f"{stage.name}/", step)
    metrics = method.final_metrics(summaries)
    log_numbers(ctx, metrics, "", step)
    return metrics
