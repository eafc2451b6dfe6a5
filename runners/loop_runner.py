"""Runs a ``loop`` method on Lightning Fabric (device, precision, distribution) with the run's loggers.

Resume is the runner's service ``ctx.checkpoint`` (runners.checkpoint): RNG states, the method's declared
generators, curves and the config identity are saved and restored there, once for every loop method.
"""

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


def check_resume(method: LoopMethod, ctx: RunContext) -> None:
    """Refuse (ResumeRefused) a checkpoint.pt made with other settings, before anything is built."""
    ctx.checkpoint.check()


def run_loop(method: LoopMethod, ctx: RunContext) -> dict[str, float]:
    fabric = make_fabric(ctx)
    ctx.device = fabric.device  # the device contract (runners.context): Fabric's choice, for every helper
    return method.run(ctx, fabric)
