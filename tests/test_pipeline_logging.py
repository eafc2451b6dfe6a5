"""Every run logs through its loggers (issue 18, item 11): a pipeline's stage summaries and final metrics
go through ctx.log, the W&B run exists even when a method logs nothing itself, and a sweep's runs are
grouped (group: the experiment's name, job type: the method's name)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf

from runners.context import RunContext
from runners.contract import PipelineMethod, Stage
from runners.pipeline_runner import run_pipeline


class Recorder:
    """A logger that keeps what it is sent, as Lightning's loggers receive it."""

    def __init__(self) -> None:
        self.logged: list[tuple[int, dict[str, float]]] = []

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.logged.append((step, metrics))


class TwoStages(PipelineMethod):
    def stages(self, ctx: RunContext) -> list[Stage]:
        def first(ctx: RunContext) -> dict[str, Any]:
            ctx.log({"acc": 0.5}, step=10, curve=True)  # a stage's own curve, up to step 10
            return {"n": 3, "name": "not a number", "flag": True}

        return [Stage("first", first), Stage("second", lambda ctx: {"exact_match": 40.0})]


def test_stage_summaries_and_final_metrics_reach_the_loggers(tmp_path: Path) -> None:
    cfg = OmegaConf.create({"seed": 0, "method": {"name": "two"}})
    recorder = Recorder()
    ctx = RunContext(cfg=cfg, out_dir=tmp_path, loggers=[recorder])
    metrics = run_pipeline(TwoStages(), ctx)
    assert metrics == {"exact_match": pytest.approx(40.0)}
    assert recorder.logged == [
        (10, {"acc": 0.5}),
        (11, {"first/n": 3.0}),  # after the stage's own steps (W&B drops a lower step)
        (12, {"second/exact_match": 40.0}),
        (13, {"exact_match": 40.0}),
    ]
    # a resumed run (both stages reused) logs the same summaries into its own W&B run
    again = Recorder()
    run_pipeline(TwoStages(), RunContext(cfg=cfg, out_dir=tmp_path, loggers=[again]))
    assert [m for _, m in again.logged] == [{"first/n": 3.0}, {"second/exact_match": 40.0}, metrics]


@pytest.mark.slow  # starts W&B in this process (a few seconds)
def test_the_wandb_run_exists_at_once_with_group_and_job_type(
    compose, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import runners.loggers as loggers

    monkeypatch.setenv("WANDB_MODE", "offline")
    for name in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    monkeypatch.setattr(loggers, "_experiment_name", lambda: "ifd_selection")
    built = loggers.build_loggers(compose(["method=ifd", "scale=smoke"]), tmp_path, "ifd-s0")
    try:
        run = built[0]._experiment  # made by build_loggers, before anything is logged
        assert run is not None and (run.group, run.job_type) == ("ifd_selection", "ifd")
        assert loggers.wandb_run_dir(built) is not None
    finally:
        loggers.close_loggers(built, "success")
    assert list((tmp_path / "wandb").glob("offline-run-*"))
