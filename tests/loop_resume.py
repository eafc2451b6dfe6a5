"""Run a `loop` method in-process and stop it mid-run, as a killed process would stop: shared by the
resume tests of the loop methods (CHAIN, SCooL, tests/test_exact_resume.py). The resumed attempt gets a
fresh context, as a restarted process would: its curves and RNG states come back from the runner's resume
service (runners.checkpoint)."""

from __future__ import annotations

from pathlib import Path

from hydra.utils import instantiate
from lightning.fabric import Fabric
from lightning.fabric.utilities.seed import seed_everything

from runners.context import RunContext


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
    seed_everything(cfg.seed, workers=True, verbose=False)  # as runners.execute seeds every attempt
    ctx = StoppingContext(cfg=cfg, out_dir=out)
    ctx.stop_at = stop_at
    return instantiate(cfg.method, _convert_="all").run(ctx, Fabric(accelerator="cpu", devices=1)), ctx
