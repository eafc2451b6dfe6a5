"""Runs a ``fit`` method through ``lightning.pytorch.Trainer``: fit (resuming from last.ckpt), then test.

Lightning's checkpoint holds the model, optimisers, schedulers and loop counters, but not what an exact
resume also needs; :class:`ResumeState` adds it to every checkpoint: the global RNG states, the
generators the module and the datamodule declare (``generators() -> dict[str, torch.Generator]``: the
augmentation's, the shuffling's), the curves logged so far and the config identity (runners.identity),
so a resumed fit gives the uninterrupted run's metrics and full curves, and one made with other settings
is refused. Under data parallelism (only rank 0 writes the checkpoint) every rank's RNG and generator
states are gathered into it, and each rank takes back its own, so a resumed DDP run resumes on every rank.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint

from runners.checkpoint import capture_rng, generator_state, restore_rng, set_generator_state
from runners.context import RunContext
from runners.contract import FitMethod
from runners.identity import check_identity, config_identity

STATE_KEY = "reprolab_resume"


def declared_generators(*owners: Any) -> dict[str, torch.Generator]:
    """The generators each owner declares with ``generators()``, keyed ``<owner class>.<name>``."""
    out = {}
    for owner in owners:
        declare = getattr(owner, "generators", None)
        if callable(declare):
            out.update({f"{type(owner).__name__}.{k}": g for k, g in declare().items()})
    return out


class ResumeState(Callback):
    """Stores and restores, inside Lightning's checkpoint, what Lightning does not: RNGs, curves, identity."""

    def __init__(self, ctx: RunContext, module: LightningModule, datamodule: LightningDataModule) -> None:
        self.ctx = ctx
        self.generators = declared_generators(module, datamodule)
        self._world, self._rank = 1, 0

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._world, self._rank = trainer.world_size, trainer.global_rank
        self.ctx.device = trainer.strategy.root_device  # the device contract (runners.context)

    def _own_state(self) -> dict[str, Any]:
        return {
            "rng": capture_rng(),
            "generators": {name: generator_state(g) for name, g in self.generators.items()},
        }

    @property
    def state_key(self) -> str:
        return STATE_KEY

    def state_dict(self) -> dict[str, Any]:
        own = self._own_state()
        state = {"identity": config_identity(self.ctx.cfg), **own, "curves": copy.deepcopy(self.ctx.curves)}
        if self._world > 1:  # called on every rank at the same point (Lightning's checkpoint dump)
            ranks: list[Any] = [None] * self._world
            torch.distributed.all_gather_object(ranks, own)
            state["ranks"] = ranks
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        ranks = state.get("ranks") or []
        if self._rank < len(ranks):  # this rank's own states (rank 0's when saved by fewer ranks)
            state = {**state, **ranks[self._rank]}
        restore_rng(state["rng"])
        for name, gen in self.generators.items():
            set_generator_state(gen, state["generators"][name])
        self.ctx.curves.clear()
        self.ctx.curves.update(copy.deepcopy(state["curves"]))


def last_checkpoint(ctx: RunContext) -> Path:
    return ctx.out_dir / "checkpoints" / "last.ckpt"


def check_resume(method: FitMethod, ctx: RunContext) -> None:
    """Refuse (ResumeRefused) a last.ckpt made with other settings, before anything is built."""
    last = last_checkpoint(ctx)
    if last.exists():
        ckpt = torch.load(last, map_location="cpu", weights_only=False, mmap=True)
        stored = ckpt.get("callbacks", {}).get(STATE_KEY, {}).get("identity")
        check_identity(str(last), stored, config_identity(ctx.cfg))


def run_fit(method: FitMethod, ctx: RunContext) -> dict[str, float]:
    check_resume(method, ctx)
    hw = ctx.cfg.hardware
    module, datamodule = method.build(ctx)
    last = last_checkpoint(ctx)
    trainer = Trainer(
        accelerator=hw.accelerator,
        devices=hw.devices,
        num_nodes=hw.num_nodes,
        strategy=hw.strategy,
        precision=hw.precision,
        logger=ctx.loggers or False,
        default_root_dir=str(ctx.out_dir),
        callbacks=[
            ModelCheckpoint(dirpath=str(last.parent), save_last=True),
            ResumeState(ctx, module, datamodule),
        ],
        deterministic=ctx.cfg.scale.name == "smoke",
        **method.trainer_kwargs(ctx),
    )
    trainer.fit(module, datamodule=datamodule, ckpt_path=str(last) if last.exists() else None)
    fit_metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    tested = trainer.test(module, datamodule=datamodule, verbose=False)
    test_metrics = {k: float(v) for k, v in (tested[0] if tested else {}).items()}
    return method.final_metrics(fit_metrics, test_metrics)
