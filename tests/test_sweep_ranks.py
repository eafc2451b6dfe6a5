"""Sweeps on a multi-process strategy: each job of `run.py -m ... hardware=ddp` is one launch episode. The
ranks Lightning launches run that job (not the whole sweep it re-executes), rank 0 leaves no launcher state
behind for the next job, SLURM tasks count as an external launch, and joblib workers are refused."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from runners.distributed import (
    LAUNCH_VARIABLES,
    RANK_JOB_ENV,
    launch_episode,
    launched_externally,
    launched_rank_argv,
    publish_job_for_ranks,
)
from runners.validate import ConfigError, validate_overrides

SWEEP = [
    "-m",
    "method=sbcl",
    "scale=smoke",
    "method.epochs=1",
    "method.probe.epochs=1",
    "seed=0,1",
    "logger=none",
]
DDP = ["hardware=ddp", "hardware.accelerator=cpu", "hardware.devices=2"]


def test_a_launched_rank_runs_its_job_not_the_sweep(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*LAUNCH_VARIABLES, RANK_JOB_ENV, "RANK", "SLURM_NTASKS", "SLURM_PROCID"):
        monkeypatch.delenv(name, raising=False)
    argv = [*SWEEP, "hydra.run.dir=x", "hydra.job.name=train_ddp_process_1"]  # what Lightning re-executes
    with launch_episode(RANK_JOB_ENV):
        publish_job_for_ranks(["method=sbcl", "seed=1"], "/runs/seed=1,a")
        assert launched_rank_argv(argv) == argv  # rank 0 itself
        monkeypatch.setenv("LOCAL_RANK", "1")
        assert launched_rank_argv(argv) == [
            "method=sbcl",
            "seed=1",
            'hydra.run.dir="/runs/seed=1,a"',
            "hydra.output_subdir=null",
        ]
        monkeypatch.setenv("RANK", "1")  # torchrun: every process runs the command line it was given
        assert launched_rank_argv(argv) == argv
    assert RANK_JOB_ENV not in os.environ and "LOCAL_RANK" not in os.environ  # the episode left nothing set


def test_slurm_tasks_are_an_external_launch(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "TORCHELASTIC_RUN_ID", "SLURM_NTASKS", "SLURM_PROCID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SLURM_PROCID", "0")
    monkeypatch.setenv("SLURM_NTASKS", "1")  # a one-task allocation (salloc, sbatch) launches nothing
    assert not launched_externally()
    monkeypatch.setenv("SLURM_NTASKS", "2")
    assert launched_externally()


def test_joblib_workers_cannot_launch_ranks() -> None:
    with pytest.raises(ConfigError, match=r"launcher=joblib cannot run hardware=ddp"):
        validate_overrides([*SWEEP, *DDP, "launcher=joblib"])
    validate_overrides([*SWEEP, *DDP])  # the basic launcher: one job after another
    validate_overrides([*SWEEP, "launcher=joblib"])  # one process per job


@pytest.mark.slow
def test_a_half_done_ddp_sweep_resumes(cli, tmp_path: Path) -> None:
    """Job 0 done, job 1 not: rank 0 skips job 0 and launches a rank for job 1, which must run job 1 (a rank
    that re-ran the sweep would take job 0 into job 1's process group, and the job failed)."""
    sweep = [*DDP, f"hydra.sweep.dir={tmp_path}"]
    first = cli(*SWEEP[:-2], "seed=0", "logger=none", *sweep, env={"WANDB_MODE": "disabled"})
    assert first.returncode == 0, first.stderr[-2000:]
    second = cli(*SWEEP, *sweep, env={"WANDB_MODE": "disabled"})
    assert second.returncode == 0, second.stderr[-2000:]
    records = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("*/results.json"))]
    assert [r["status"] for r in records] == ["completed", "completed"]
    assert second.stderr.count("Launching 2 jobs") + second.stdout.count("Launching 2 jobs") == 1


def test_fits_that_launch_their_own_ranks_are_refused_on_slurm_tasks() -> None:
    ifd = ["-m", "method=ifd", "hardware=ddp", "hardware.devices=2", "method.tuning.micro_batch_size=4"]
    with pytest.raises(ConfigError, match=r"method=ifd cannot run its fits on SLURM tasks"):
        validate_overrides([*ifd, "launcher=slurm"])
    validate_overrides(ifd)  # on one node Lightning starts the ranks of each fit
    validate_overrides(["-m", "method=sbcl", "hardware=ddp", "hardware.devices=2", "launcher=slurm"])
