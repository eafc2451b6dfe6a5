"""The instruction tuner, the IFD scorer, the AlpaGasus score-logit grader and the causal-LM loader keep to
the device they are given (issue 16): under the instrumented runner device of tests/test_device_contract.py
every model they run and every tensor they make is on it, and the numbers are those of the plain path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from data.config import CausalLMConfig, TuningConfig
from data.instructions.records import InstructionRecord
from data.llm.loader import load_causal_lm
from tests import test_device_contract as contract
from tests.test_device_contract import RUNNER_DEVICE, DeviceTracker

tracker = contract.tracker  # the instrumented runner device, as a fixture of this module

RECORDS = [
    InstructionRecord("a", "Reverse the word.", "planet", "tenalp"),
    InstructionRecord("b", "What is twelve plus thirty?", "", "forty two"),
    InstructionRecord("c", "Name a colour of the sky.", "", "blue"),
]


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.paper.standins import tiny_causal_lm

    return tiny_causal_lm(tmp_path_factory.mktemp("llama"), "llama")


def _lm(folder: Path, device: Any = None) -> Any:
    return load_causal_lm(CausalLMConfig(name=str(folder), source="hub", package=None), device=device)


def _all_on(tracker: DeviceTracker, model: torch.nn.Module) -> bool:
    return all(tracker.tagged(p) for p in model.parameters())


def test_the_loader_puts_the_weights_on_the_device_it_is_given(
    tiny_llama: Path, tracker: DeviceTracker
) -> None:
    assert not _all_on(tracker, _lm(tiny_llama).model)  # the default device: what the contract catches
    assert _all_on(tracker, _lm(tiny_llama, RUNNER_DEVICE).model)


def test_generation_runs_on_the_given_device(tiny_llama: Path, tracker: DeviceTracker) -> None:
    from data.instructions.tuning import generate_answers

    lm = _lm(tiny_llama)
    answers = generate_answers(lm.model, lm.tokenizer, RECORDS, max_new_tokens=4, device=RUNNER_DEVICE)
    assert len(answers) == len(RECORDS) and tracker.modules_run > 0
    assert tracker.violations == {}, tracker.violations


def test_ifd_scores_run_on_the_given_device_with_the_plain_paths_numbers(
    tiny_llama: Path,
    tracker: DeviceTracker,
) -> None:
    from methods.ifd.scoring import ifd_scores

    lm = _lm(tiny_llama)
    plain = ifd_scores(lm.model, lm.tokenizer, RECORDS, max_length=128, batch_size=2)
    assert tracker.violations != {}  # the reference, on the default device, breaks the contract
    tracker.violations.clear()
    moved = ifd_scores(lm.model, lm.tokenizer, RECORDS, max_length=128, batch_size=2, device=RUNNER_DEVICE)
    assert tracker.violations == {}, tracker.violations
    for a, b in zip(plain, moved, strict=True):
        assert a.conditioned == pytest.approx(b.conditioned, abs=1e-5)
        assert a.direct == pytest.approx(b.direct, abs=1e-5) and a.answer_tokens == b.answer_tokens


def test_the_score_logit_grader_runs_on_the_given_device(tiny_llama: Path, tracker: DeviceTracker) -> None:
    from methods.alpagasus.grading import grade_by_score_logits

    lm = _lm(tiny_llama)
    lm.tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }}\n{% endfor %}"
    grades = grade_by_score_logits(lm.model, lm.tokenizer, RECORDS, batch_size=2, device=RUNNER_DEVICE)
    assert [g.id for g in grades] == ["a", "b", "c"] and all(0.0 <= g.score <= 5.0 for g in grades)
    assert tracker.violations == {}, tracker.violations


def test_the_tuned_model_comes_back_on_the_fit_device(tiny_llama: Path, tracker: DeviceTracker) -> None:
    from types import SimpleNamespace

    from data.instructions.tuning import tune

    lm = _lm(tiny_llama)
    cfg = TuningConfig(mode="full", lr=1e-3, epochs=1, batch_size=2, micro_batch_size=1, max_length=64)
    hardware = SimpleNamespace(accelerator="cpu", devices=1, strategy="auto", precision="32-true")
    tuned = tune(lm.model, lm.tokenizer, RECORDS, cfg, seed=0, hardware=hardware)
    off = [n for n, p in tuned.named_parameters() if not tracker.tagged(p)]
    assert off == [] and tracker.violations == {}, (off, tracker.violations)
