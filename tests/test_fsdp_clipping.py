"""The tuner's gradient clipping under FSDP: the norm over every shard through the root module's own
``clip_grad_norm_`` (Lightning's FSDP precision raises for norm clipping); elsewhere Lightning's own."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.distributed.fsdp as fsdp

from data.config import TuningConfig
from data.instructions.tuning import InstructionTuner


class _Root(torch.nn.Module):
    """Stands in for the FSDP root (FSDP itself needs an accelerator): records what it is asked."""

    def __init__(self) -> None:
        super().__init__()
        self.clipped: list[float] = []

    def clip_grad_norm_(self, max_norm: float) -> torch.Tensor:
        self.clipped.append(max_norm)
        return torch.tensor(0.0)


def _tuner(root: torch.nn.Module) -> InstructionTuner:
    tuner = InstructionTuner(torch.nn.Linear(2, 2), TuningConfig(mode="full"), total_steps=1)
    tuner.trainer = SimpleNamespace(strategy=SimpleNamespace(model=root))  # type: ignore[assignment]
    return tuner


def test_fsdp_clips_by_the_norm_over_its_shards(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fsdp, "FullyShardedDataParallel", _Root)
    root = _Root()
    _tuner(root).configure_gradient_clipping(object(), 1.0, "norm")
    assert root.clipped == [1.0]


def test_without_fsdp_lightning_clips(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    tuner = _tuner(torch.nn.Linear(2, 2))
    monkeypatch.setattr(tuner, "clip_gradients", lambda *a: calls.append(a))
    tuner.configure_gradient_clipping("opt", 1.0, "norm")
    assert calls == [("opt", 1.0, "norm")]
