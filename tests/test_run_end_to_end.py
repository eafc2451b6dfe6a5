"""run.py as a user runs it: a smoke run's results.json, W&B offline files, resume after a kill."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow

# Short episodes (1000 / 4 steps) so a smoke run passes several episode ends, where checkpoints are taken.
SMOKE = ["scale=smoke", "env.action_repeat=4", "checkpoint_every=250"]


def results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def test_smoke_run_writes_results_and_wandb_offline_run(cli, tmp_path: Path) -> None:
    out = cli(*SMOKE, "seed=3", f"hydra.run.dir={tmp_path}", env={"WANDB_MODE": "offline"})
    assert out.returncode == 0, out.stderr[-3000:]
    record = results(tmp_path)
    assert record["status"] == "completed"
    assert (record["method"], record["env"], record["scale"], record["seed"]) == (
        "erc",
        "cartpole_swingup",
        "smoke",
        3,
    )
    metrics = record["metrics"]
    assert {"eval_return", "td_error_dispersion", "td_error_mean"} <= set(metrics)
    assert all(math.isfinite(v) for v in metrics.values())
    assert 0.0 <= metrics["eval_return"] <= 1000.0
    assert record["wall_seconds"] > 0 and record["git_commit"]
    assert record["config"]["method"]["beta"] == 0.005 and record["config"]["env"]["action_repeat"] == 4
    assert [step for step, _ in record["curves"]["eval_return"]] == [500, 1000, 1500]
    assert "seed=3" in record["overrides"]
    offline_runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == 1
    assert "W&B offline run" in out.stderr + out.stdout

    again = cli(*SMOKE, "seed=3", f"hydra.run.dir={tmp_path}")
    assert again.returncode == 0 and "already completed" in again.stderr + again.stdout
    assert results(tmp_path) == record  # a completed run is not run twice


def test_csv_logger_writes_metrics(cli, tmp_path: Path) -> None:
    out = cli(*SMOKE, "method=sac", "logger=csv", f"hydra.run.dir={tmp_path}")
    assert out.returncode == 0, out.stderr[-3000:]
    header = (tmp_path / "csv" / "metrics.csv").read_text().splitlines()[0]
    assert "eval_return" in header and "critic/td_loss" in header
    assert results(tmp_path)["config"]["method"]["beta"] == 0.0


def test_killed_run_resumes_to_the_same_result(tmp_path: Path) -> None:
    """Kill a run once it has a checkpoint; the restarted run must finish exactly where an
    uninterrupted run with the same seed does (agent, optimisers, buffer and RNG states restored)."""
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    args = [sys.executable, "run.py", *SMOKE, "logger=none"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([*args, f"hydra.run.dir={straight}"], cwd=ROOT, env=env, check=True, capture_output=True)

    victim = subprocess.Popen(
        [*args, f"hydra.run.dir={resumed}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not (resumed / "checkpoint.pt").exists() and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert (resumed / "checkpoint.pt").exists(), "no checkpoint before the kill"
    assert results(resumed)["status"] == "running"  # a hard kill leaves the record unfinished

    second = subprocess.run(
        [*args, f"hydra.run.dir={resumed}"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resumed from" in second.stderr + second.stdout
    a, b = results(straight), results(resumed)
    assert b["status"] == "completed" and [t["status"] for t in b["attempts"]] == ["killed", "completed"]
    assert b["metrics"] == pytest.approx(a["metrics"], rel=1e-5)
    assert b["curves"].keys() == a["curves"].keys()
    for name, points in a["curves"].items():
        assert [s for s, _ in b["curves"][name]] == [s for s, _ in points]
        assert [v for _, v in b["curves"][name]] == pytest.approx([v for _, v in points], rel=1e-5)
