"""Runs a ``loop`` method on Lightning Fabric (device, precision, distribution) with the run's loggers."""

from __future__ import annotations

from lightning.fabric import Fabric

from runners.context import RunContext
from runners.contract import LoopMethod


def make_fabric(ctx: RunContext) -> Fabric:
    hw = ctx.cfg.hardware
    fabric = Fabric(
        accelerator=hw.accelerator,
        devices=hw.devices,
        num_nodes=hw.num_nodes,
        strategy=hw.strategy,
        precision=hw.precision,
        loggers=ctx.loggers,
    )
    fabric.launch()
    return fabric


def run_loop(method: LoopMethod, ctx: RunContext) -> dict[str, float]:
    return method.run(ctx, make_fabric(ctx))
