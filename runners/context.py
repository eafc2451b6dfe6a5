"""What a method sees of its run: config, output dir, seed, loggers, checkpoint, curves, progress bars, and
the device contract: ``ctx.device``, ``ctx.precision`` and ``ctx.strategy``, from ``hardware``.

Every kind gets them from the runner: fit methods through the Trainer (which moves module and batches;
``ctx.device`` is its root device once the fit starts), loop methods through Fabric (``ctx.device`` is
``fabric.device``), pipeline stages from ``ctx.device`` itself (built from ``hardware.accelerator`` and this
process's local rank). A method puts every model and tensor it makes on that device, never on a named one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from runners.checkpoint import Checkpointer

if TYPE_CHECKING:
    import torch

log = logging.getLogger("reprolab")


def device_for(hardware: Any) -> torch.device:
    """The torch device ``hardware`` (a HardwareConfig node) names for this process: cpu; cuda at this
    rank's local index (or its entry of a ``devices`` list); mps; auto picks cuda, then mps, then cpu."""
    import os

    import torch

    accelerator = str(getattr(hardware, "accelerator", "cpu"))
    if accelerator == "auto":
        accelerator = (
            "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
        )
    if accelerator in ("gpu", "cuda"):
        local = int(os.environ.get("LOCAL_RANK", "0"))
        devices = getattr(hardware, "devices", 1)
        if not isinstance(devices, int | str):  # an explicit list of GPU indices
            return torch.device("cuda", int(list(devices)[local]))
        return torch.device("cuda", local)
    return torch.device(accelerator)


@dataclass
class RunContext:
    cfg: DictConfig
    out_dir: Path
    loggers: list[Any] = field(default_factory=list)
    # Learning curves kept in results.json (the report plots them): name -> [[step, value], ...].
    curves: dict[str, list[list[float]]] = field(default_factory=dict)

    @property
    def seed(self) -> int:
        return int(self.cfg.seed)

    @cached_property
    def device(self) -> torch.device:
        """Where the method's models and tensors go. Built from ``hardware`` (:func:`device_for`); the
        fit and loop runners replace it with their engine's own device once it is up."""
        return device_for(self.cfg.get("hardware"))  # a bare config (tests) has none: the CPU

    @property
    def precision(self) -> str:
        """Lightning's precision name from ``hardware`` ("32-true", "bf16-mixed", ...)."""
        return str((self.cfg.get("hardware") or {}).get("precision", "32-true"))

    @property
    def strategy(self) -> str:
        return str((self.cfg.get("hardware") or {}).get("strategy", "auto"))

    @cached_property
    def checkpoint(self) -> Checkpointer:
        """The run's resume service (runners.checkpoint): one per run, so tracked generators stay known."""
        return Checkpointer(self.out_dir / "checkpoint.pt", cfg=self.cfg, curves=self.curves)

    def log(self, metrics: dict[str, float], step: int, curve: bool = False) -> None:
        """Send scalars to every logger; with ``curve`` also keep them for results.json."""
        metrics = {k: float(v) for k, v in metrics.items()}
        for logger in self.loggers:
            logger.log_metrics(metrics, step=step)
        if curve:
            for name, value in metrics.items():
                self.curves.setdefault(name, []).append([step, value])

    @contextmanager
    def progress(self, total: int, description: str, completed: int = 0) -> Iterator[Any]:
        """A rich progress bar; ``bar.update(advance=n, info=...)`` moves it."""
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
        )
        with Progress(*columns, transient=False) as bar:
            task = bar.add_task(description, total=total, completed=completed, info="")

            class _Bar:
                def update(self, advance: int = 1, info: str | None = None) -> None:
                    fields = {} if info is None else {"info": info}
                    bar.update(task, advance=advance, **fields)

            yield _Bar()
