"""Sweeps on a cluster with DDP: `launcher=slurm hardware=ddp` asks SLURM for hardware.devices tasks and
GPUs per node (hardware.num_nodes nodes), and each task of the job is one rank of one process group. Under
submitit's local executor (the same launcher config, `hydra/launcher=submitit_local`), 2 CPU tasks join one
gloo group and only rank 0 writes results.json."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from runners.distributed import adopt_submitit_local_ranks, global_rank, is_global_zero
from runners.schemas import register_all
from runners.validate import ConfigError, validate_overrides

ROOT = Path(__file__).resolve().parents[1]
# what adopt_submitit_local_ranks exports: the variables Lightning reads for externally started ranks
RANK_KEYS = (
    "MASTER_ADDR",
    "MASTER_PORT",
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "NODE_RANK",
)


def _launcher(*overrides: str) -> dict:
    """The resolved hydra.launcher node that Hydra hands the submitit launcher for these overrides."""
    register_all()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=list(overrides), return_hydra_config=True)
    return OmegaConf.to_container(cfg.hydra.launcher, resolve=True)


def test_slurm_launcher_takes_tasks_gpus_and_nodes_from_hardware() -> None:
    launcher = _launcher("launcher=slurm", "hardware=ddp", "hardware.devices=4", "method=sbcl")
    assert launcher["_target_"].endswith("submitit_launcher.SlurmLauncher")
    assert (launcher["tasks_per_node"], launcher["gpus_per_node"], launcher["nodes"]) == (4, 4, 1)
    two_nodes = _launcher("launcher=slurm", "hardware=ddp", "hardware.devices=8", "hardware.num_nodes=2")
    assert (two_nodes["tasks_per_node"], two_nodes["gpus_per_node"], two_nodes["nodes"]) == (8, 8, 2)
    # one GPU, one task: hardware=gpu
    one = _launcher("launcher=slurm", "hardware=gpu")
    assert (one["tasks_per_node"], one["gpus_per_node"], one["nodes"]) == (1, 1, 1)


def test_slurm_with_ddp_refuses_an_unknown_device_count_before_submitting() -> None:
    """hardware=ddp's devices=-1 ("every visible GPU") cannot size a SLURM job: refused, naming the key."""
    with pytest.raises(ConfigError, match=r"launcher=slurm with hardware=ddp .* needs hardware.devices="):
        validate_overrides(["-m", "launcher=slurm", "hardware=ddp", "method=sbcl"])
    validate_overrides(["-m", "launcher=slurm", "hardware=ddp", "hardware.devices=4", "method=sbcl"])
    validate_overrides(["-m", "hardware=ddp", "method=sbcl", "hardware.accelerator=cpu"])  # no cluster: fine


@pytest.fixture
def clean_rank_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    # setenv first, so monkeypatch restores absence: the code under test writes os.environ directly
    for key in (*RANK_KEYS, "GROUP_RANK", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_JOB_ID"):
        monkeypatch.setenv(key, "")
        monkeypatch.delenv(key)
    for key in [k for k in os.environ if k.startswith(("SUBMITIT_", "SLURM_"))]:
        monkeypatch.delenv(key, raising=False)
    return monkeypatch


def _submitit_local_task(mp: pytest.MonkeyPatch, task: int, ntasks: int, job_id: str = "4242") -> None:
    """The variables submitit's local controller gives task ``task`` of ``ntasks`` (submitit/local)."""
    mp.setenv("SUBMITIT_EXECUTOR", "local")
    mp.setenv("SUBMITIT_LOCAL_JOB_ID", job_id)
    mp.setenv("SUBMITIT_LOCAL_NTASKS", str(ntasks))
    mp.setenv("SUBMITIT_LOCAL_JOB_NUM_NODES", "1")
    mp.setenv("SUBMITIT_LOCAL_NODEID", "0")
    mp.setenv("SUBMITIT_LOCAL_LOCALID", str(task))
    mp.setenv("SUBMITIT_LOCAL_GLOBALID", str(task))


def test_submitit_local_tasks_get_lightning_ranks_that_agree_on_one_address(clean_rank_env) -> None:
    seen = []
    for task in (0, 1):
        _submitit_local_task(clean_rank_env, task, ntasks=2)
        for key in RANK_KEYS:
            clean_rank_env.delenv(key, raising=False)
        assert global_rank() == 0  # before: every task would think it is rank 0
        adopt_submitit_local_ranks()
        seen.append({k: os.environ[k] for k in RANK_KEYS})
        assert global_rank() == task and is_global_zero() == (task == 0)
    assert [s["RANK"] for s in seen] == ["0", "1"] and [s["LOCAL_RANK"] for s in seen] == ["0", "1"]
    for s in seen:
        assert (s["WORLD_SIZE"], s["LOCAL_WORLD_SIZE"], s["NODE_RANK"], s["MASTER_ADDR"]) == (
            "2",
            "2",
            "0",
            "127.0.0.1",
        )
    assert seen[0]["MASTER_PORT"] == seen[1]["MASTER_PORT"] and 20000 <= int(seen[0]["MASTER_PORT"]) <= 60000


def test_rank_adoption_leaves_one_task_slurm_and_existing_launchers_alone(clean_rank_env) -> None:
    _submitit_local_task(clean_rank_env, 0, ntasks=1)  # one task: Lightning may start its own ranks
    adopt_submitit_local_ranks()
    assert not any(k in os.environ for k in RANK_KEYS)
    _submitit_local_task(clean_rank_env, 1, ntasks=2)
    clean_rank_env.setenv("LOCAL_RANK", "0")  # a rank Lightning's own launcher started: keep its variables
    adopt_submitit_local_ranks()
    assert "RANK" not in os.environ and os.environ["LOCAL_RANK"] == "0"
    clean_rank_env.setenv("SUBMITIT_EXECUTOR", "slurm")  # submitit on SLURM: SLURMEnvironment's job
    clean_rank_env.delenv("LOCAL_RANK")
    adopt_submitit_local_ranks()
    assert not any(k in os.environ for k in RANK_KEYS)


@pytest.mark.slow
def test_sbcl_ddp_sweep_on_two_submitit_tasks_is_one_gloo_group(cli, tmp_path: Path) -> None:
    out = cli(
        "-m",
        "launcher=slurm",
        "hydra/launcher=submitit_local",  # the slurm launcher config on submitit's local executor
        "hydra.launcher.cpus_per_task=1",
        "hydra.launcher.gpus_per_node=0",
        "hydra.launcher.mem_gb=4",
        "hardware=ddp",
        "hardware.accelerator=cpu",
        "hardware.devices=2",
        "hardware.precision=32-true",
        "method=sbcl",
        "scale=smoke",
        "logger=none",
        f"hydra.sweep.dir={tmp_path}",
        timeout=240,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    jobs = [d for d in (tmp_path / ".submitit").iterdir() if d.name.isdigit()]  # not the "%j" template
    assert len(jobs) == 1  # one SLURM-style job ...
    logs = {t: (jobs[0] / f"{jobs[0].name}_{t}_log.err").read_text() for t in (0, 1)}
    # ... of two tasks, each one rank of the same 2-process group (not two groups of their own)
    assert "Initializing distributed: GLOBAL_RANK: 0, MEMBER: 1/2" in logs[0]
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in logs[1]
    assert "distributed_backend=gloo" in logs[0] and "Starting with 2 processes" in logs[0]
    assert "GLOBAL_RANK: 1" not in logs[0]  # task 0 did not start a rank of its own
    records = list(tmp_path.rglob("results.json"))
    assert len(records) == 1  # rank 0's alone
    record = json.loads(records[0].read_text())
    assert record["status"] == "completed" and len(record["attempts"]) == 1
    assert record["config"]["hardware"]["devices"] == 2 and record["config"]["hardware"]["strategy"] == "ddp"
    assert 0.0 <= record["metrics"]["balanced_acc"] <= 1.0
    assert record["metrics"]["sub/num_subclasses"] == pytest.approx(37.0)
