"""InstructZero end to end at scale=smoke: run.py's results, curves and artefacts; resume repeats no call."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_smoke_run_writes_results_curve_and_best_instruction(cli, tmp_path: Path) -> None:
    out = cli("method=instructzero", "scale=smoke", "logger=none", "seed=1", f"hydra.run.dir={tmp_path}")
    assert out.returncode == 0, out.stderr[-3000:]
    record = json.loads((tmp_path / "results.json").read_text())
    assert record["status"] == "completed" and record["method"] == "instructzero"
    m = record["metrics"]
    assert m["evaluations"] == 5 and 1 <= m["unique_instructions"] <= 5  # smoke: 3 Sobol + 1 × 2
    assert 0 <= m["best_dev"] <= 1 and 0 <= m["test"] <= 1 and 0 <= m["gp_time_share"] < 1
    curve = record["curves"]["best_dev"]
    assert [s for s, _ in curve] == [1, 2, 3, 4, 5]
    values = [v for _, v in curve]
    assert values == sorted(values) and math.isclose(values[-1], m["best_dev"])  # best-so-far
    best = (tmp_path / "best_instruction.txt").read_text().strip()
    rows = [json.loads(line) for line in (tmp_path / "instructions.jsonl").read_text().splitlines()]
    assert len(rows) == 5 and best in {r["instruction"] for r in rows}
    assert max(r["dev"] for r in rows) == pytest.approx(m["best_dev"])


def test_resumed_run_repeats_no_black_box_call(compose, tmp_path: Path) -> None:
    """A run stopped after its first iteration resumes from the checkpoint; with the run's response cache
    the rest of the run, test included, is answered without one client call, and the result is the same."""
    from runners.execute import execute

    cfg = compose(["method=instructzero", "scale=smoke", "logger=none"])
    first = execute(cfg, out_dir=tmp_path)
    assert first is not None and first["client_calls_this_session"] > 0
    assert (tmp_path / "checkpoint.pt").exists()  # saved after iteration 0 (of 0..1)
    (tmp_path / "results.json").unlink()
    again = execute(cfg, out_dir=tmp_path)
    assert again["client_calls_this_session"] == 0
    assert {k: v for k, v in again.items() if k not in ("client_calls_this_session", "gp_time_share")} == {
        k: v for k, v in first.items() if k not in ("client_calls_this_session", "gp_time_share")
    }
