"""Config composition stays light: `--help`, `--cfg job` and config errors must not wait for torch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_help_lists_user_groups_only_and_exits_0() -> None:
    proc = run_python("run.py", "--help")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert any(line.startswith("method: alpagasus, ce, chain") for line in lines)
    assert not [line for line in lines if line.startswith(("budget/", "schema/"))]


def test_help_does_not_use_hydras_group_listing(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """Hydra's listing builds a config repository per group and option (~2.5 s of deep copies)."""
    from hydra._internal.hydra import Hydra

    from runners.validate import check_overrides

    def slow_listing(*args, **kwargs):
        raise AssertionError("Hydra's format_config_groups was called")

    monkeypatch.setattr(Hydra, "format_config_groups", slow_listing)
    with pytest.raises(SystemExit) as done:
        check_overrides(["method=h2o", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "== Configuration groups ==" in out and "name: h2o" in out


def test_help_with_a_bad_override_is_a_config_error(capsys) -> None:
    from runners.validate import check_overrides

    with pytest.raises(SystemExit) as done:
        check_overrides(["method=nope", "--help"])
    assert done.value.code == 2
    assert "Available options in 'method'" in capsys.readouterr().err


def test_schemas_are_registered_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """run.py's pre-flight and Hydra's composition both call register_all; the second is free."""
    from hydra.core.config_store import ConfigStore

    from runners.schemas import register_all

    register_all()
    stores: list[str] = []
    monkeypatch.setattr(ConfigStore, "store", lambda self, name, *a, **k: stores.append(name))
    register_all()
    assert stores == []
