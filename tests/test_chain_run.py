"""CHAIN runs: a run stopped after a round resumes from its checkpoint to the uninterrupted result."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from lightning.fabric import Fabric

from runners.context import RunContext

SMOKE = ["method=chain", "scale=smoke", "data=digits", "logger=none"]


class Stop(Exception):
    pass


class StoppingContext(RunContext):
    """Dies (like a killed process) when the run logs its metrics of step `stop_at`."""

    stop_at: int = -1

    def log(self, metrics: dict[str, float], step: int, curve: bool = False) -> None:
        if step == self.stop_at:
            raise Stop
        super().log(metrics, step, curve)


def run_in_process(compose, overrides: list[str], out: Path, stop_at: int = -1) -> tuple[dict, RunContext]:
    cfg = compose(overrides)
    torch.manual_seed(cfg.seed)
    ctx = StoppingContext(cfg=cfg, out_dir=out)
    ctx.stop_at = stop_at
    return instantiate(cfg.method, _convert_="all").run(ctx, Fabric(accelerator="cpu", devices=1)), ctx


@pytest.mark.slow
@pytest.mark.parametrize(
    "schedule, strategy", [("meta", "badge"), ("chain", "typiclust"), ("grid", "coreset")]
)
def test_stopped_run_resumes_to_the_same_result(
    compose, tmp_path: Path, schedule: str, strategy: str
) -> None:
    args = [*SMOKE, f"method.schedule={schedule}", f"method.strategy={strategy}"]
    straight, first = run_in_process(compose, args, tmp_path / "a")
    with pytest.raises(Stop):
        run_in_process(compose, args, tmp_path / "b", stop_at=2)  # rounds 0 and 1 were checkpointed
    resumed, ctx = run_in_process(compose, args, tmp_path / "b")
    assert resumed == straight
    assert ctx.curves == first.curves
    assert [s for s, _ in ctx.curves["accuracy"]] == [0, 1, 2]
    assert [v for _, v in ctx.curves["n_labelled"]] == [10, 15, 20]
    assert 0 < straight["aulc"] <= 1 and straight["n_labelled"] == 20
