"""The runner contract: what a method plugin declares so the runner knows how to execute it.

A plugin is whatever `hydra.utils.instantiate(cfg.method)` returns. Its ``kind`` picks the runner:

- ``fit``: a LightningModule and a LightningDataModule, run by ``lightning.pytorch.Trainer`` (fit, then test).
- ``loop``: a loop that is not epochs over a dataset (environment steps, query rounds, BO iterations),
  given a Lightning ``Fabric`` for device, precision and distribution.
- ``pipeline``: named stages; each stage's artefacts land in the run dir and a re-run skips finished stages.

Every kind returns a flat dict of final metrics, which the runner writes to ``results.json``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import lightning
    from lightning.fabric import Fabric

    from runners.context import RunContext


class Method(ABC):
    kind: ClassVar[str]


class LoopMethod(Method):
    kind = "loop"

    @abstractmethod
    def run(self, ctx: RunContext, fabric: Fabric) -> dict[str, float]:
        """Run to the end; return final metrics.

        Resume goes through the runner's service ``ctx.checkpoint`` (runners.checkpoint): declare private
        generators with ``ctx.checkpoint.track(name=gen)``, call ``ctx.checkpoint.load()`` once everything
        is built (it restores RNG states, those generators and ``ctx.curves``, and returns the state saved
        last, or None), and ``ctx.checkpoint.save(state)`` with only the method's own state."""


class FitMethod(Method):
    kind = "fit"

    @abstractmethod
    def build(self, ctx: RunContext) -> tuple[lightning.LightningModule, lightning.LightningDataModule]:
        """The model and the data; built after seeding, on the CPU."""

    def trainer_kwargs(self, ctx: RunContext) -> dict[str, Any]:
        """Extra ``Trainer`` arguments (max_epochs, gradient clipping, ...)."""
        return {}

    def final_metrics(
        self, fit_metrics: dict[str, float], test_metrics: dict[str, float]
    ) -> dict[str, float]:
        return {**fit_metrics, **test_metrics}

    # Exact resume (runners.fit_runner): the module and the datamodule may define
    # ``generators() -> dict[str, torch.Generator]`` (augmentation, shuffling); the runner stores their
    # states in last.ckpt with every global RNG state, the curves and the config identity.


@dataclass(frozen=True)
class Stage:
    """One step of a pipeline. ``fn`` returns a JSON-able summary, stored so a re-run can skip the stage.

    ``reads`` names the config keys the stage's result depends on, as dotted prefixes (``"method.arm"``,
    ``"model"`` for the whole group, ``"seed"``): the stage's stored identity covers only those, so changing
    a key only a later stage reads keeps this stage's work (runners.identity). A stage is reused only when
    it and every stage before it match, so a stage need not list what it gets through earlier stages'
    artefacts. ``None`` (the default) covers the whole config: safe, but any change invalidates the stage.
    A key missing from ``reads`` means silently reused work, so list generously.
    """

    name: str
    fn: Callable[[RunContext], dict[str, Any]]
    reads: tuple[str, ...] | None = None


class PipelineMethod(Method):
    kind = "pipeline"

    @abstractmethod
    def stages(self, ctx: RunContext) -> list[Stage]:
        """The stages in order; each reads earlier stages' artefacts from ``ctx.out_dir``."""

    def final_metrics(self, summaries: dict[str, dict[str, Any]]) -> dict[str, float]:
        """Final metrics from the stages' summaries; by default the last stage's numeric values."""
        last = summaries[next(reversed(summaries))] if summaries else {}
        return {k: float(v) for k, v in last.items() if isinstance(v, int | float)}
