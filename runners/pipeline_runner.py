"""Runs a ``pipeline`` method: stages in order, each one's summary saved so a re-run skips it."""

from __future__ import annotations

import json
import logging
from typing import Any

from runners.atomic import write_json_atomic
from runners.context import RunContext
from runners.contract import PipelineMethod

log = logging.getLogger("reprolab")


def run_pipeline(method: PipelineMethod, ctx: RunContext) -> dict[str, float]:
    stage_dir = ctx.out_dir / "stages"
    summaries: dict[str, dict[str, Any]] = {}
    for stage in method.stages(ctx):
        done = stage_dir / f"{stage.name}.json"
        if done.exists():
            log.info("stage %s: done in an earlier attempt, skipped", stage.name)
            summaries[stage.name] = json.loads(done.read_text())
            continue
        log.info("stage %s: running", stage.name)
        summaries[stage.name] = stage.fn(ctx)
        write_json_atomic(done, summaries[stage.name])
    return method.final_metrics(summaries)
