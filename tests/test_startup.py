"""Config composition stays light: `--help`, `--cfg job` and config errors must not wait for torch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "dm_control", "mujoco", "transformers")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}


def run_python(*args: str) -> subprocess.CompletedProcess[str]:
    """A fresh interpreter in the repo root, so sys.modules starts empty."""
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120, check=False
    )


def test_preflight_composition_imports_no_heavy_module() -> None:
    code = f"""
import sys
from runners.schemas import register_all
register_all()
from runners.validate import validate_overrides
validate_overrides([])
print("heavy:", [m for m in {HEAVY!r} if m in sys.modules])
"""
    proc = run_python("-c", code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "heavy: []", proc.stdout


def test_cfg_job_method_sac_composes_beta_zero() -> None:
    proc = run_python("run.py", "--cfg", "job", "method=sac")
    assert proc.returncode == 0, proc.stderr
    assert "beta: 0.0" in proc.stdout
