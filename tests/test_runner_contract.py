"""The fit and pipeline runners with tiny plugins: later methods plug in without touching the runner."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning
import pytest
import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, TensorDataset

from runners.context import RunContext
from runners.contract import FitMethod, PipelineMethod, Stage
from runners.fit_runner import run_fit
from runners.pipeline_runner import run_pipeline


def make_ctx(tmp_path: Path, compose, method: str = "erc") -> RunContext:
    cfg = compose([f"method={method}", "scale=smoke", "logger=none"])
    return RunContext(cfg=cfg, out_dir=tmp_path)


class LineFit(lightning.LightningModule):
    """y = 3x − 1 by least squares: the test loss must fall far below the untrained one."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Linear(1, 1)

    def step(self, batch: Any) -> torch.Tensor:
        x, y = batch
        return torch.nn.functional.mse_loss(self.net(x), y)

    def training_step(self, batch: Any, _: int) -> torch.Tensor:
        loss = self.step(batch)
        self.log("train_loss", loss)
        return loss

    def test_step(self, batch: Any, _: int) -> None:
        self.log("test_loss", self.step(batch))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


class LineData(lightning.LightningDataModule):
    def __init__(self) -> None:
        super().__init__()
        x = torch.linspace(-1, 1, 64)[:, None]
        self.data = TensorDataset(x, 3 * x - 1)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.data, batch_size=16, shuffle=True)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.data, batch_size=64)


class LineMethod(FitMethod):
    def build(self, ctx: RunContext) -> tuple[lightning.LightningModule, lightning.LightningDataModule]:
        return LineFit(), LineData()

    def trainer_kwargs(self, ctx: RunContext) -> dict[str, Any]:
        return {"max_epochs": 30, "enable_progress_bar": False, "enable_model_summary": False}


def test_fit_runner_trains_tests_and_leaves_a_resumable_checkpoint(tmp_path: Path, compose) -> None:
    torch.manual_seed(0)
    untrained = LineMethod().build(make_ctx(tmp_path, compose))[0]
    x = torch.linspace(-1, 1, 64)[:, None]
    before = torch.nn.functional.mse_loss(untrained.net(x), 3 * x - 1).item()
    metrics = run_fit(LineMethod(), make_ctx(tmp_path, compose))
    assert metrics["test_loss"] < 0.01 * before
    assert "train_loss" in metrics
    assert (tmp_path / "checkpoints" / "last.ckpt").exists()


class CountingPipeline(PipelineMethod):
    calls: list[str]

    def __init__(self, fail_at: str | None = None) -> None:
        self.calls, self.fail_at = [], fail_at

    def stage(self, name: str, value: float) -> Stage:
        def fn(ctx: RunContext) -> dict[str, Any]:
            self.calls.append(name)
            if name == self.fail_at:
                raise RuntimeError(f"{name} broke")
            (ctx.out_dir / f"{name}.txt").write_text(str(value))
            return {"value": value}

        return Stage(name, fn)

    def stages(self, ctx: RunContext) -> list[Stage]:
        return [self.stage("score", 1.0), self.stage("select", 2.0), self.stage("evaluate", 3.0)]


def test_pipeline_rerun_skips_finished_stages(tmp_path: Path, compose) -> None:
    ctx = make_ctx(tmp_path, compose)
    broken = CountingPipeline(fail_at="evaluate")
    with pytest.raises(RuntimeError, match="evaluate broke"):
        run_pipeline(broken, ctx)
    assert broken.calls == ["score", "select", "evaluate"]
    again = CountingPipeline()
    assert run_pipeline(again, ctx) == {"value": 3.0}
    assert again.calls == ["evaluate"]  # score and select were done in the first attempt
    assert OmegaConf.load(tmp_path / "stages" / "select.json").summary == {"value": 2.0}


def test_rerun_forgets_the_finished_runs_resumable_state(tmp_path: Path, compose) -> None:
    """rerun=true must recompute: a completed run's stages and checkpoints would replay the old result."""
    from runners.execute import _forget_progress

    ctx = make_ctx(tmp_path, compose)
    run_pipeline(CountingPipeline(), ctx)
    (tmp_path / "checkpoint.pt").write_bytes(b"state")
    (tmp_path / "checkpoints").mkdir()
    _forget_progress(tmp_path)
    assert not (tmp_path / "checkpoint.pt").exists() and not (tmp_path / "checkpoints").exists()
    again = CountingPipeline()
    run_pipeline(again, ctx)
    assert again.calls == ["score", "select", "evaluate"]
