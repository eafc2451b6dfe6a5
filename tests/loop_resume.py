"""Run a `loop` method in-process and stop it mid-run, as a killed process would stop: shared by the
resume tests of the round-based methods (CHAIN, SCooL)."""

from __future__ import annotations

from pathlib import Path

import torch
from hydra.utils import instantiate
from lightning.fabric import Fabric

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
    torch.manual_seed(cfg.seed)
    ctx = StoppingContext(cfg=cfg, out_dir=out)
    ctx.stop_at = stop_at
    return instantiate(cfg.method, _convert_="all").run(ctx, Fabric(accelerator="cpu", devices=1)), ctx
