"""Sweeps through Hydra's launchers: a failing job does not sink the others; joblib and submitit run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

TINY = [
    "scale=smoke",
    "method.total_steps=300",
    "method.learning_starts=100",
    "method.eval_every=300",
    "logger=none",
]


def statuses(sweep: Path, *keys: str) -> dict[tuple, str]:
    """(record[key] for key in keys) → status, for every job of the sweep."""
    records = [json.loads(p.read_text()) for p in sweep.rglob("results.json")]
    return {tuple(r[k] for k in keys): r["status"] for r in records}


def test_one_failing_job_does_not_stop_the_sweep(cli, tmp_path: Path) -> None:
    # The pre-flight check sees only the first value of a sweep; the bad task fails inside its own job.
    out = cli(
        "-m", "method=erc,sac", "env.task=cartpole_swingup,cartpole_fly", *TINY, f"hydra.sweep.dir={tmp_path}"
    )
    assert out.returncode == 1  # Hydra reports the failure ...
    assert statuses(tmp_path, "method", "env") == {  # ... after every job ran
        ("erc", "cartpole_swingup"): "completed",
        ("sac", "cartpole_swingup"): "completed",
        ("erc", "cartpole_fly"): "failed",
        ("sac", "cartpole_fly"): "failed",
    }
    failed = next(p for p in tmp_path.rglob("results.json") if "cartpole_fly" in str(p))
    assert "env.task='cartpole_fly' is not a DMControl task" in json.loads(failed.read_text())["error"]


def test_joblib_launcher_runs_jobs_in_worker_processes(cli, tmp_path: Path) -> None:
    out = cli("-m", "launcher=joblib", "seed=0,1", *TINY, f"hydra.sweep.dir={tmp_path}")
    assert out.returncode == 0, out.stderr[-3000:]
    assert statuses(tmp_path, "seed") == {(0,): "completed", (1,): "completed"}
    assert "Joblib.Parallel" in out.stdout + out.stderr
    records = [json.loads(p.read_text()) for p in tmp_path.rglob("results.json")]
    assert {r["config"]["hardware"]["num_threads"] for r in records} == {1}


def test_slurm_config_runs_under_submitit_local_executor(cli, tmp_path: Path) -> None:
    out = cli(
        "-m",
        "launcher=slurm",
        "hydra/launcher=submitit_local",
        "hydra.launcher.cpus_per_task=1",
        "hydra.launcher.gpus_per_node=0",
        "hydra.launcher.mem_gb=4",
        "seed=5",
        *TINY,
        f"hydra.sweep.dir={tmp_path}",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert statuses(tmp_path, "seed") == {(5,): "completed"}
    assert list((tmp_path / ".submitit").glob("*/*_log.out"))
