"""`report.percent`: results.json and table.csv hold fractions (one unit per metric kind, issue 18 item 12);
the markdown table prints the listed metrics, and the paper's numbers beside them, in percent."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from runners.report import make_report

SPEC = {
    "title": "units",
    "rows": ["config.method.partition"],
    "columns": "config.method.algo",
    "metrics": ["accuracy", "in_group_weight"],
    "higher_is_better": {"accuracy": True},
    "percent": ["accuracy"],
    "rl": False,
    "curve": None,
    "paper": {"source": "made up", "metrics": {"accuracy": {"noniid": {"fedavg": 0.7065}}}},
}


def write_sweep(root: Path, spec: dict) -> None:
    values = {("fedavg", 0): (0.70, 0.25), ("fedavg", 1): (0.72, 0.35), ("local", 0): (0.955, None)}
    for (algo, seed), (acc, weight) in values.items():
        run = root / f"{algo}-{seed}"
        run.mkdir(parents=True)
        metrics = {"accuracy": acc} | ({"in_group_weight": weight} if weight is not None else {})
        record = {
            "status": "completed",
            "seed": seed,
            "overrides": [f"method.algo={algo}", f"seed={seed}"],
            "metrics": metrics,
            "config": {"method": {"algo": algo, "partition": "noniid"}, "report": spec},
        }
        (run / "results.json").write_text(json.dumps(record))


def test_listed_metrics_print_in_percent_and_the_csv_keeps_fractions(tmp_path: Path) -> None:
    write_sweep(tmp_path / "sweep", SPEC)
    text = make_report(tmp_path / "sweep", tmp_path / "out")
    assert "## accuracy (%) (↑)" in text
    assert "| noniid | 71.0 ± 1.41 (n=2) | **95.5 (n=1)** | 70.7 |" in text
    assert "## in_group_weight\n" in text and "0.3 ± 0.0707 (n=2)" in text  # not listed: as stored
    rows = list(csv.DictReader((tmp_path / "out" / "table.csv").open()))
    fedavg = next(r for r in rows if r["config.method.algo"] == "fedavg" and r["metric"] == "accuracy")
    assert float(fedavg["mean"]) == pytest.approx(0.71) and float(fedavg["paper"]) == pytest.approx(0.7065)


def test_percent_true_prints_every_metric_in_percent(tmp_path: Path) -> None:
    write_sweep(tmp_path / "sweep", SPEC | {"percent": True})
    text = make_report(tmp_path / "sweep", tmp_path / "out")
    assert "## accuracy (%) (↑)" in text and "## in_group_weight (%)" in text and "30.0 ± 7.07 (n=2)" in text


def test_without_percent_fractions_print_as_stored(tmp_path: Path) -> None:
    write_sweep(tmp_path / "sweep", {k: v for k, v in SPEC.items() if k != "percent"})
    text = make_report(tmp_path / "sweep", tmp_path / "out")
    assert "## accuracy (↑)" in text and "| noniid | 0.71 ± 0.0141 (n=2) | **0.955 (n=1)** | 0.707 |" in text
