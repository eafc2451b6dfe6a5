"""Exact resume is a runner service (issue 18 item 4): for each runner kind a run killed at an awkward
point resumes to the uninterrupted run's metrics and full curves, with nothing resume-specific in the
method beyond declaring its state (loop), its generators (fit) or its stages (pipeline)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from lightning.fabric import Fabric
from lightning.fabric.utilities.seed import seed_everything

from runners.context import RunContext
from runners.contract import LoopMethod, PipelineMethod, Stage
from runners.pipeline_runner import run_pipeline
from tests.loop_resume import Stop, StoppingContext

BASE = ["method=erc", "scale=smoke", "logger=none"]


def draw(gen: torch.Generator) -> float:
    """One number from every RNG a resume has to restore."""
    return (
        random.random() + float(np.random.rand()) + torch.rand(1).item() + torch.rand(1, generator=gen).item()
    )


class NoisyLoop(LoopMethod):
    """Saves only its own counters; the global RNGs, its generator and the curves are the service's."""

    def run(self, ctx: RunContext, fabric: Fabric) -> dict[str, float]:
        gen = torch.Generator().manual_seed(ctx.seed)
        ctx.checkpoint.track(gen=gen)
        step, total = 0, 0.0
        state = ctx.checkpoint.load()
        if state is not None:
            step, total = state["step"], state["total"]
        while step < 7:
            total, step = total + draw(gen), step + 1
            ctx.log({"total": total}, step, curve=True)
            if step % 2 == 0:
                ctx.checkpoint.save({"step": step, "total": total})
        return {"total": total}


def loop_attempt(compose, out: Path, stop_at: int = -1) -> tuple[dict[str, float], RunContext]:
    seed_everything(0, verbose=False)  # as execute does for every attempt
    ctx = StoppingContext(cfg=compose(BASE), out_dir=out)
    ctx.stop_at = stop_at
    return NoisyLoop().run(ctx, Fabric(accelerator="cpu", devices=1)), ctx


def test_loop_resume_restores_rngs_generators_and_curves(compose, tmp_path: Path) -> None:
    straight, first = loop_attempt(compose, tmp_path / "a")
    with pytest.raises(Stop):
        loop_attempt(compose, tmp_path / "b", stop_at=5)  # dies mid-way, after the step-4 checkpoint
    resumed, ctx = loop_attempt(compose, tmp_path / "b")
    assert resumed == straight  # the same code path on the same machine: exact
    assert ctx.curves == first.curves and [s for s, _ in ctx.curves["total"]] == list(range(1, 8))


class NoisyPipeline(PipelineMethod):
    def __init__(self, kill_at: str | None = None) -> None:
        self.kill_at = kill_at

    def stages(self, ctx: RunContext) -> list[Stage]:
        def stage(name: str, step: int) -> Stage:
            def fn(ctx: RunContext) -> dict[str, Any]:
                if name == self.kill_at:
                    raise Stop
                value = draw(torch.Generator().manual_seed(step))
                ctx.log({"value": value}, step, curve=True)
                return {f"{name}_value": value}

            return Stage(name, fn, reads=("seed",))

        return [stage("prepare", 1), stage("score", 2), stage("report", 3)]

    def final_metrics(self, summaries: dict[str, dict[str, Any]]) -> dict[str, float]:
        return {k: v for s in summaries.values() for k, v in s.items()}


def pipeline_attempt(compose, out: Path, kill_at: str | None = None) -> tuple[dict[str, float], RunContext]:
    seed_everything(0, verbose=False)
    ctx = RunContext(cfg=compose(BASE), out_dir=out)
    return run_pipeline(NoisyPipeline(kill_at), ctx), ctx


def test_pipeline_killed_between_stages_resumes_exactly(compose, tmp_path: Path) -> None:
    straight, first = pipeline_attempt(compose, tmp_path / "a")
    with pytest.raises(Stop):
        pipeline_attempt(compose, tmp_path / "b", kill_at="score")  # prepare finished, score did not
    resumed, ctx = pipeline_attempt(compose, tmp_path / "b")
    assert resumed == straight
    assert ctx.curves == first.curves and [s for s, _ in ctx.curves["value"]] == [1, 2, 3]


def fit_attempt(compose, out: Path, stop_at: int = -1) -> tuple[dict[str, float], RunContext]:
    from hydra.utils import instantiate

    from runners.fit_runner import run_fit

    cfg = compose(["method=sbcl", "scale=smoke", "data=digits_lt", "logger=none"])
    seed_everything(cfg.seed, workers=True, verbose=False)
    ctx = StoppingContext(cfg=cfg, out_dir=out)
    ctx.stop_at = stop_at
    return run_fit(instantiate(cfg.method, _convert_="all"), ctx), ctx


@pytest.mark.slow
def test_sbcl_fit_killed_mid_run_resumes_exactly(compose, tmp_path: Path) -> None:
    """Killed as epoch 3 of 4 ends (last.ckpt holds 2 epochs; between two re-clusterings), the resumed fit
    must match the uninterrupted one: augmentation and shuffling generators, RNGs and curves restored."""
    straight, first = fit_attempt(compose, tmp_path / "a")
    with pytest.raises(Stop):
        fit_attempt(compose, tmp_path / "b", stop_at=3)
    assert (tmp_path / "b" / "checkpoints" / "last.ckpt").exists()
    resumed, ctx = fit_attempt(compose, tmp_path / "b")
    assert resumed == straight
    assert ctx.curves == first.curves and [s for s, _ in ctx.curves["train_loss"]] == [1, 2, 3, 4]
