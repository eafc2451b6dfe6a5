"""What a method sees of its run: config, output dir, seed, loggers, checkpoint, curves, progress bars."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from runners.checkpoint import Checkpointer

log = logging.getLogger("reprolab")


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

    @property
    def checkpoint(self) -> Checkpointer:
        return Checkpointer(self.out_dir / "checkpoint.pt")

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
