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
