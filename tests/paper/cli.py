"""A rehearsal runs as a user would: `python <args>` from the repository root, then the report."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# The accelerator the rehearsals run on: cpu here; gpu when bench/gpu_check.sh swaps their overrides
# (tests/paper/gpu_rehearsal.py).
REHEARSAL_ACCELERATOR = os.environ.get("REPROLAB_REHEARSAL_HARDWARE", "cpu")

ROOT = Path(__file__).resolve().parents[2]


def python(*args: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def report(sweep: Path, experiment: str, env: dict[str, str]) -> str:
    """`python -m runners.report <sweep> --experiment <file>`; returns the table.md it wrote."""
    out = python("-m", "runners.report", str(sweep), "--experiment", experiment, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return (sweep / "table.md").read_text()
