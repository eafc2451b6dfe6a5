"""Typed config schemas, registered with Hydra's ConfigStore before composition.

Hydra merges every YAML file into these dataclasses, so a misspelt key or a wrong type fails at compose
time. Method, environment and dataset schemas live beside their code (``methods/<name>/config.py``,
``data/config.py``); :func:`register_all` imports those small modules, never torch.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

ROOT = Path(__file__).resolve().parent.parent

ACCELERATORS = ("cpu", "gpu", "cuda", "mps", "auto")
PRECISIONS = ("32-true", "16-mixed", "bf16-mixed", "bf16-true", "16-true", "64-true")
LOGGER_KINDS = ("wandb", "csv", "none")
SCALES = ("smoke", "small", "paper")


def check_choice(key: str, value: Any, valid: tuple) -> None:
    """Every schema's choice check: the message names the key and the valid choices."""
    if value not in valid:
        raise ValueError(f"{key}={value!r} is not valid; choose one of: {', '.join(map(str, valid))}")


@dataclass
class HardwareConfig:
    """Lightning accelerator/devices/strategy/precision, passed to Trainer and Fabric alike."""

    name: str = "cpu"
    accelerator: str = "cpu"
    devices: Any = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    # Torch intra-op threads; 0 keeps torch's default. On small shared machines 1 is fastest.
    num_threads: int = 0

    def __post_init__(self) -> None:
        check_choice("hardware.accelerator", self.accelerator, ACCELERATORS)
        check_choice("hardware.precision", self.precision, PRECISIONS)


@dataclass
class LoggerConfig:
    """W&B runs offline unless WANDB_MODE=online; csv writes metrics.csv in the run dir."""

    kind: str = "wandb"
    project: str = "reprolab"
    entity: str | None = None
    group: str | None = None  # None: the experiment's name (experiment=...), else no group
    job_type: str | None = None  # None: the method's name
    tags: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        check_choice("logger.kind", self.kind, LOGGER_KINDS)


@dataclass
class ScaleConfig:
    """smoke: CI seconds; small: CPU minutes that show the effect; paper: the paper's budget."""

    name: str = "small"
    description: str = ""

    def __post_init__(self) -> None:
        check_choice("scale.name", self.name, SCALES)


@dataclass
class RunConfig:
    """The root of every composed config."""

    method: Any = MISSING
    env: Any = None
    data: Any = None
    model: Any = None
    hardware: HardwareConfig = field(default_factory=HardwareConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    scale: ScaleConfig = field(default_factory=ScaleConfig)
    # Report spec of an experiment (rows, columns, metrics, the paper's numbers); read by runners.report.
    report: Any = None
    seed: int = 0
    # Re-run a job even when its output dir already holds a completed results.json.
    rerun: bool = False
    # Save a resumable checkpoint this often (method units: env steps, rounds, ...); 0 disables.
    checkpoint_every: int = 5000

    def __post_init__(self) -> None:
        if self.checkpoint_every < 0:
            raise ValueError(
                f"checkpoint_every={self.checkpoint_every} must be >= 0 (a positive interval, or 0 for none)"
            )
        if self.seed < 0:
            raise ValueError(f"seed={self.seed} must be >= 0 (numpy and torch generators take no negatives)")


def register_all() -> None:
    """Register the root schema and every schema module of methods/ and data/ (cheap imports only).

    Once per process: each store builds a structured config (~0.2 s for all of them), and run.py's
    pre-flight and Hydra's own composition would otherwise pay it twice."""
    cs = ConfigStore.instance()
    if "run_schema.yaml" in cs.repo:
        return
    modules = ["data.config"] + [
        f"methods.{p.parent.name}.config" for p in sorted((ROOT / "methods").glob("*/config.py"))
    ]
    for module in modules:
        importlib.import_module(module).register(cs)
    cs.store(name="run_schema", node=RunConfig)  # last: it marks the registration complete
