"""MerA's source selection and units, without training: the target's own adapters are left out of every
row (issue 15), tracks and tasks are named as AdapterHub names them, accuracies are fractions and the
table prints them in percent only when the report spec asks (issue 18 item 12)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from data.text_tasks import GLUE_TRACKS
from methods.mera.config import published_task, task_key
from methods.mera.method import MerA
from methods.mera.model import accuracy
from methods.mera.sources import SourceAdapter, ensure_sources
from methods.mera.table import make_table

PUBLISHED = [
    {"id": "AdapterHub/bert-base-uncased-pf-mnli", "track": "nli"},
    {"id": "AdapterHub/bert-base-uncased-pf-rte", "track": "nli"},
    {"id": "AdapterHub/bert-base-uncased-pf-qqp", "track": "sts"},
    {"id": "AdapterHub/bert-base-uncased-pf-sst2", "track": "sentiment"},
]
VARIANTS = ["single", "fusion", "average", "mera", "average_same_track", "mera_same_track"]


def selected_for(method: MerA, tmp_path: Path) -> list[str]:
    """The sources every row of ``method`` merges, fuses or tunes from, after stage `sources` wrote them."""
    sources = ensure_sources(None, method.cfg, root=tmp_path)  # published: no encoder, nothing trained
    (tmp_path / "sources.json").write_text(json.dumps([s.__dict__ for s in sources]))
    return [s.name for s in method.selected(SimpleNamespace(out_dir=tmp_path))]


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_targets_published_adapter_is_left_out_of_every_row(tmp_path: Path, variant: str) -> None:
    method = MerA(task_source="glue", target="mnli", published=PUBLISHED, variant=variant)
    names = selected_for(method, tmp_path)
    assert "AdapterHub__bert-base-uncased-pf-mnli" not in names
    assert "AdapterHub__bert-base-uncased-pf-rte" in names  # the rest of the nli track stays
    if not variant.endswith("same_track"):
        assert len(names) == 3


def test_a_generated_source_of_the_target_task_is_left_out(tmp_path: Path) -> None:
    sources = [
        SourceAdapter("entail__box", "entail", "x", 0.9, "entail/box"),
        SourceAdapter("entail__trip", "entail", "y", 0.9, "entail/trip"),
        SourceAdapter("similar__pair", "similar", "z", 0.9, "similar/pair"),
    ]
    (tmp_path / "sources.json").write_text(json.dumps([s.__dict__ for s in sources]))
    method = MerA(target="entail/box", variant="mera_same_track")
    assert [s.name for s in method.selected(SimpleNamespace(out_dir=tmp_path))] == ["entail__trip"]
    method = MerA(target="entail/box", variant="mera", sources=["entail/box"])
    (tmp_path / "sources.json").write_text(json.dumps([sources[0].__dict__]))
    with pytest.raises(ValueError, match="every source adapter was trained on the target"):
        method.selected(SimpleNamespace(out_dir=tmp_path))


def test_task_names_as_adapterhub_has_them() -> None:
    assert published_task("AdapterHub/bert-base-uncased-pf-mnli") == "mnli"
    assert published_task("AdapterHub/roberta-base-pf-stsb@ah") == "stsb"
    assert published_task("nli/multinli@ukp") == "multinli"
    assert published_task("AdapterHub/some-custom-adapter") is None
    assert task_key("multinli") == task_key("MNLI") == "mnli"
    assert task_key("sts-b") == task_key("stsb") and task_key("sst-2") == task_key("sst2")
    assert GLUE_TRACKS["cola"] == "lingaccept"  # AdapterHub's lingaccept/cola
    # an explicit task wins over the id
    method = MerA(
        task_source="glue", target="rte", published=[{"id": "me/custom", "track": "nli", "task": "RTE"}]
    )
    assert ensure_sources(None, method.cfg)[0].task == "RTE"


class FixedLogits(nn.Module):
    """A classifier stand-in whose prediction for row i is ``preds[i]``."""

    def __init__(self, preds: list[int]) -> None:
        super().__init__()
        self.preds = torch.tensor(preds)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return nn.functional.one_hot(self.preds[input_ids[:, 0]], 2).float()


def test_accuracy_is_a_fraction() -> None:
    enc = {"input_ids": torch.arange(4)[:, None], "attention_mask": torch.ones(4, 1, dtype=torch.long)}
    acc = accuracy(FixedLogits([0, 1, 1, 0]), enc, np.array([0, 1, 0, 0]), batch_size=3)
    assert acc == pytest.approx(0.75)


def write_run(root: Path, variant: str, seed: int, accs: dict[str, float], percent: list[str] | None) -> None:
    run = root / f"{variant}-{seed}"
    run.mkdir(parents=True)
    report = {"title": "t", "paper_gains": {"MRPC": 0.035}}
    if percent is not None:
        report["percent"] = percent
    record = {
        "status": "completed",
        "seed": seed,
        "metrics": accs,
        "config": {
            "method": {"variant": variant, "target": "entail/list", "task_source": "generated"},
            "report": report,
        },
    }
    (run / "results.json").write_text(json.dumps(record))


@pytest.mark.parametrize("percent", [["acc_k2"], None])
def test_table_prints_percent_only_when_the_spec_asks(tmp_path: Path, percent: list[str] | None) -> None:
    for seed, (a, b) in enumerate([(0.60, 0.70), (0.62, 0.74)]):
        write_run(tmp_path, "full_ft", seed, {"acc_k2": a}, percent)
        write_run(tmp_path, "mera_same_track", seed, {"acc_k2": b}, percent)
    text = make_table(tmp_path)
    if percent:
        assert "Test accuracy (%)" in text and "72.0 ± 2.8 (2)" in text and "61.0 ± 1.4 (2)" in text
        assert "(points): K=2: +11.0" in text and "MRPC +3.5" in text
    else:
        assert "(%)" not in text and "0.720 ± 0.028 (2)" in text and "K=2: +0.110" in text
        assert "MRPC +0.035" in text
