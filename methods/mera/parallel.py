"""MerA's target tuning under data parallelism (``hardware=ddp``): each step's K-shot batch split over the
ranks, the test set scored in shards and gathered.

The ``tune`` stage launches the ranks with Fabric at its start: Fabric re-executes ``run.py`` for ranks
1..N-1, which reuse rank 0's finished ``sources`` and ``merge`` stages (runners.pipeline_runner) and run
``tune`` in step with it; only rank 0 writes (the stage file, ``tune.json``, results, W&B). The source
adapters and the merge stay one-process work: they are done before the launch.
"""

from __future__ import annotations

from typing import Any

import torch

from runners.context import RunContext
from runners.distributed import planned_world_size


def launch(ctx: RunContext) -> Any:
    """A launched Fabric for a multi-process ``hardware`` (ranks 1..N-1 start here), else None.

    Precision stays fp32 (``32-true``) whatever ``hardware.precision``, as in one process: MerA's tuning
    has no mixed-precision path, and ranks must compute what one process would."""
    hardware = ctx.cfg.hardware
    if planned_world_size(hardware) == 1:
        return None
    from lightning.fabric import Fabric

    fabric = Fabric(
        accelerator=str(hardware.accelerator),
        devices=hardware.devices,
        num_nodes=int(hardware.get("num_nodes", 1) or 1),
        # full_ft trains the whole encoder, whose pooler the mean/[CLS] head never uses: DDP must be told
        strategy="ddp_find_unused_parameters_true" if hardware.strategy == "ddp" else str(hardware.strategy),
        precision="32-true",
    )
    fabric.launch()
    return fabric


def local_rows(idx: torch.Tensor, fabric: Any) -> torch.Tensor:
    """This rank's share of a global batch (rows rank, rank + W, ...)."""
    if fabric is None or fabric.world_size == 1:
        return idx
    if len(idx) < fabric.world_size:
        raise ValueError(
            f"a batch of {len(idx)} rows cannot be split over {fabric.world_size} ranks: raise "
            "method.tune_batch or the shots, or lower hardware.devices"
        )
    return idx[fabric.global_rank :: fabric.world_size]


def shard(n: int, fabric: Any) -> slice:
    """This rank's contiguous block of ``n`` rows (the last ones may be short or empty)."""
    if fabric is None or fabric.world_size == 1:
        return slice(0, n)
    size = -(-n // fabric.world_size)
    start = min(n, fabric.global_rank * size)
    return slice(start, min(n, start + size))


def gather_rows(local: torch.Tensor, n: int, fabric: Any) -> torch.Tensor:
    """Every rank's block of a length-``n`` result, in order (padded to equal blocks for the gather)."""
    if fabric is None or fabric.world_size == 1:
        return local
    size = -(-n // fabric.world_size)
    padded = torch.full((size,), -1, dtype=local.dtype, device=local.device)
    padded[: len(local)] = local
    return fabric.all_gather(padded).reshape(-1)[:n]
