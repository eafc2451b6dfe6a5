"""``bench/h2o_speed.py --quick`` runs end to end on a tiny Llama and prints a verdict for every target
(the speed numbers themselves live in the benchmark, not here)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.paper.standins import tiny_causal_lm

ROOT = Path(__file__).resolve().parent.parent
TARGETS = [
    "KV bytes ours H2O / full",
    "prefill s ours H2O / full",
    "decode tok/s ours H2O / full",
    "prefill+decode s full / ours H2O",
    "batch 16 decode tok/s ours H2O / full",
    "largest batch under the KV cap ours H2O / full",
]


@pytest.mark.slow  # a subprocess importing transformers and kvpress: ~12 s of CPU
def test_quick_bench_prints_every_target_with_a_verdict(tmp_path: Path) -> None:
    model = tiny_causal_lm(tmp_path / "llama", "llama")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "h2o_speed.py"), "--quick", "--model", str(model)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    for name in TARGETS:
        line = next((row for row in out.splitlines() if row.strip().startswith(name)), None)
        assert line is not None, f"no line for {name!r}:\n{out}"
        assert re.search(r"\(target [<>]= [\d.]+\)\s+(PASS|MISS|NO VALUE)", line), line
    # Part 4 ran: every quick batch for both variants, and the largest batch of each under the cap.
    assert re.search(r"^full sdpa\s+4\s", out, re.M) and re.search(r"^ours H2O 20%\s+4\s", out, re.M)
    assert "largest batch that fits" in out
    assert "failed" not in out.split("1. prefill")[1].split("information")[0]  # no variant broke
    # Part 2b: the end-to-end target and the information batch, each a median over interleaved rounds.
    rows = re.findall(
        r"^\s+(\d+)\s+2\s+4\s+[\d.]+\s+[\d.]+\s+([\d.]+)\s+([\d.]+)-([\d.]+)\s+\((\w+)\)", out, re.M
    )
    assert [(b, role) for b, *_, role in rows] == [("1", "target"), ("2", "information")], out
    for _, median, low, high, _ in rows:
        assert float(low) <= float(median) <= float(high)
    e2e = next(row for row in out.splitlines() if row.strip().startswith("prefill+decode s full / ours H2O"))
    assert "median of 2 rounds, range" in e2e, e2e


@pytest.mark.slow  # a subprocess importing transformers and kvpress: ~10 s of CPU
def test_quick_step_breakdown_splits_both_variants_steps(tmp_path: Path) -> None:
    model = tiny_causal_lm(tmp_path / "llama", "llama")
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "h2o_step_breakdown.py"), "--quick", "--model", str(model)],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    cells = {}
    for row in done.stdout.splitlines():
        found = re.match(r"^(\s*[a-z][a-z ()]*?)\s{2,}([\d.]+|-)\s+([\d.]+|-)(\s|$)", row)
        if found:
            cells[found[1].strip()] = (found[2], found[3])
    for part in ("mlp", "attention module", "cache update", "attention fn", "norms", "rest", "step (mean)"):
        assert part in cells and all(c != "-" for c in cells[part]), (part, done.stdout)
    assert cells["observe"][0] == "-" and cells["observe"][1] != "-"  # only ours observes and evicts
    # The parts nest: the attention function lies inside the attention module.
    for full_or_ours in (0, 1):
        assert float(cells["attention fn"][full_or_ours]) <= float(cells["attention module"][full_or_ours])
    assert re.search(r"full / ours per step: median [\d.]+, range [\d.]+-[\d.]+", done.stdout)
    assert "roofline bytes read per step: weights" in done.stdout
