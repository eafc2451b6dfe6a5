"""Runs a ``fit`` method through ``lightning.pytorch.Trainer``: fit (resuming from last.ckpt), then test."""

from __future__ import annotations

from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint

from runners.context import RunContext
from runners.contract import FitMethod


def run_fit(method: FitMethod, ctx: RunContext) -> dict[str, float]:
    hw = ctx.cfg.hardware
    module, datamodule = method.build(ctx)
    ckpt_dir = ctx.out_dir / "checkpoints"
    trainer = Trainer(
        accelerator=hw.accelerator,
        devices=hw.devices,
        num_nodes=hw.num_nodes,
        strategy=hw.strategy,
        precision=hw.precision,
        logger=ctx.loggers or False,
        default_root_dir=str(ctx.out_dir),
        callbacks=[ModelCheckpoint(dirpath=str(ckpt_dir), save_last=True)],
        deterministic=ctx.cfg.scale.name == "smoke",
        **method.trainer_kwargs(ctx),
    )
    last = ckpt_dir / "last.ckpt"
    trainer.fit(module, datamodule=datamodule, ckpt_path=str(last) if last.exists() else None)
    fit_metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    tested = trainer.test(module, datamodule=datamodule, verbose=False)
    test_metrics = {k: float(v) for k, v in (tested[0] if tested else {}).items()}
    return method.final_metrics(fit_metrics, test_metrics)
