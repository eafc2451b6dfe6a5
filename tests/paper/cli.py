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


def sweep_grid(experiment: str, scale: str) -> tuple[dict[str, list[str]], object]:
    """An experiment's sweeper parameters at ``scale`` as Hydra's basic sweeper expands them (a fixed
    value as a one-item list of its text), and the composed config."""
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from runners.schemas import register_all

    register_all()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", [f"experiment={experiment}", f"scale={scale}"], return_hydra_config=True)
    params = cfg.hydra.sweeper.params
    overrides = OverridesParser.create().parse_overrides([f"{key}={params[key]}" for key in params])
    grid = {
        o.key_or_group: list(o.sweep_string_iterator()) if o.is_sweep_override() else [str(o.value())]
        for o in overrides
    }
    return grid, cfg


def markdown_rows(text: str, heading: str) -> list[dict[str, str]]:
    """The table under ``## heading`` of a report's table.md, as a list of {column: cell}."""
    block = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in block.splitlines() if line.startswith("|")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    return [dict(zip(head, row, strict=True)) for row in rows]
