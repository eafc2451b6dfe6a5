"""Which process of a distributed run this one is, read from what the launchers put in the environment.

Lightning's ``ddp`` strategy re-executes ``sys.argv`` for ranks 1..N-1 (``LOCAL_RANK``, ``NODE_RANK``,
``WORLD_SIZE`` set), torchrun sets ``RANK``, SLURM sets ``SLURM_PROCID``. The runner must know the rank
before any engine starts, so only global rank 0 takes the run-dir lock and writes ``results.json``, the
stage files and the W&B run; the other ranks compute, then leave.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from omegaconf import DictConfig, OmegaConf


def global_rank() -> int:
    """This process's global rank (0 outside a distributed launch). Lightning's launcher gives only the
    node and local ranks; on nodes after the first the result is merely nonzero, which is all the runner
    asks."""
    env = os.environ
    if "RANK" in env:
        return int(env["RANK"])
    if int(env.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in env:
        return int(env["SLURM_PROCID"])
    local = int(env.get("LOCAL_RANK", "0"))
    node = int(env.get("NODE_RANK", env.get("GROUP_RANK", "0")))
    return local + node * int(env.get("LOCAL_WORLD_SIZE", "1"))


def is_global_zero() -> bool:
    """Whether this process is the run's rank 0: the one that owns the run dir."""
    return global_rank() == 0


def planned_world_size(hardware: object) -> int:
    """How many processes ``hardware`` (a HardwareConfig node) asks for, from the config alone (the launch
    has not happened yet when a method is built): devices × nodes for a multi-process strategy, else 1."""
    strategy = str(getattr(hardware, "strategy", "auto"))
    devices = getattr(hardware, "devices", 1)
    nodes = int(getattr(hardware, "num_nodes", 1) or 1)
    if not strategy.startswith(("ddp", "fsdp", "deepspeed")):
        return 1
    if not isinstance(devices, str | int):  # a list of device indices (a ListConfig when composed)
        count = len(devices)
    elif str(devices) in ("-1", "auto"):
        import torch

        count = torch.cuda.device_count() if str(getattr(hardware, "accelerator", "")) != "cpu" else 1
    else:
        count = int(devices)
    return max(count, 1) * nodes


class WorkerFinished(Exception):
    """Raised on a rank other than 0 that Lightning's launcher started for one fit inside a pipeline
    stage (data.instructions.tuning), once that fit is done: rank 0 alone saves, evaluates and goes on,
    and a later fit launches fresh ranks that reuse rank 0's finished stages. The worker runner returns."""


def accumulation(batch_size: int, micro_batch_size: int, world: int) -> int:
    """Micro-batches each rank accumulates per optimizer step, so that ``batch_size`` stays the global
    batch whatever the number of ranks (the official recipes: 4 GPUs × per-device batch × accumulation)."""
    per_step = micro_batch_size * world
    if batch_size % per_step:
        raise ValueError(
            f"method.tuning.batch_size={batch_size} must be a multiple of micro_batch_size × ranks = "
            f"{micro_batch_size} × {world}: change method.tuning.micro_batch_size or hardware.devices"
        )
    return batch_size // per_step


# Multi-process strategy families (Lightning's strategy names start with these).
MULTI_PROCESS = ("ddp", "fsdp", "deepspeed")


def strategy_family(strategy: str) -> str | None:
    """``ddp_find_unused_parameters_true`` → "ddp"; "auto", "single_device" → None (one process)."""
    return next((f for f in MULTI_PROCESS if str(strategy).startswith(f)), None)


def strategy_refusal(cfg: DictConfig) -> str | None:
    """Why ``cfg.hardware.strategy`` cannot run ``cfg.method``, or None when it can.

    A method schema declares the multi-process strategy families it supports as a class variable,
    ``strategies: ClassVar[tuple[str, ...]]`` (SBCL: ``("ddp",)``; a single-environment loop: ``()``).
    A schema that declares nothing is not checked. Read at compose time, before anything heavy."""
    from omegaconf import OmegaConf

    method, hardware = cfg.get("method"), cfg.get("hardware")
    if not isinstance(method, DictConfig) or not isinstance(hardware, DictConfig):
        return None
    family = strategy_family(str(hardware.get("strategy", "auto")))
    schema = OmegaConf.get_type(method)
    supported = getattr(schema, "strategies", None)
    if family is None or supported is None or family in supported:
        return None
    name = method.get("name")
    can = f"it supports {', '.join(supported)}" if supported else "it runs in one process"
    return (
        f"method={name} cannot use hardware={hardware.get('name')} (strategy {hardware.get('strategy')}): "
        f"{can}, so {family} would only run the same work on every process. To use several devices or "
        f"cores, run independent seeds in parallel instead: python run.py -m method={name} seed=0,1,2 "
        "launcher=joblib (or launcher=slurm on a cluster), with hardware=cpu or hardware=gpu"
    )


# What Lightning's subprocess launcher puts in rank 0's own environment (subprocess_script.py). While they
# are set, Lightning takes the ranks as already launched and starts none.
LAUNCH_VARIABLES = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


def launched_externally() -> bool:
    """Whether torchrun or SLURM started this process as one rank of several (so it runs everything)."""
    env = os.environ
    slurm_tasks = int(env.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in env
    return "RANK" in env or "TORCHELASTIC_RUN_ID" in env or slurm_tasks


@contextmanager
def launch_episode(*extra: str) -> Iterator[None]:
    """Rank 0 around work for which Lightning launches ranks (one sweep job, one fit of a pipeline):
    afterwards the process group is closed and the launcher's variables (and ``extra`` ones) are as they
    were, so the next episode launches fresh ranks instead of waiting for ranks that have left."""
    before = {v: os.environ.get(v) for v in (*LAUNCH_VARIABLES, *extra)}
    try:
        yield
    finally:
        dist = sys.modules.get("torch.distributed")  # imported only if some engine used it
        if dist is not None and dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# Rank 0 of a sweep job puts its job here before any engine starts; the ranks Lightning launches inherit it.
RANK_JOB_ENV = "REPROLAB_RANK_JOB"


def publish_job_for_ranks(overrides: list[str], out_dir: str) -> None:
    """Under ``-m``, tell the ranks Lightning will launch which job of the sweep they belong to.

    Lightning's launcher re-executes rank 0's command line (``sys.argv``, subprocess_script.py's
    ``_hydra_subprocess_cmd``), which under ``-m`` is the whole sweep: rank 1 would run job 0, then job 1,
    ..., while rank 0 launches a fresh rank 1 per job, so ranks of different jobs (other seeds) would meet
    in one process group. ``launched_rank_argv`` turns the inherited command back into this one job."""
    import json

    os.environ[RANK_JOB_ENV] = json.dumps({"overrides": list(overrides), "dir": str(out_dir)})


def launched_rank_argv(argv: list[str]) -> list[str]:
    """The command line a rank Lightning launched inside a sweep job should run: that job's overrides and
    its run dir, not the sweep. Any other process (rank 0, a single run, torchrun or SLURM tasks, which
    set no job) keeps ``argv``."""
    import json

    job = os.environ.get(RANK_JOB_ENV)
    if not job or os.environ.get("LOCAL_RANK", "0") == "0" or launched_externally():
        return argv
    spec = json.loads(job)
    return [*spec["overrides"], f'hydra.run.dir="{spec["dir"]}"', "hydra.output_subdir=null"]


def adopt_submitit_local_ranks() -> None:
    """Give Lightning the ranks of a job run by submitit's *local* executor (``launcher=slurm`` with
    ``hydra/launcher=submitit_local``), which starts ``tasks_per_node`` copies of the job with only
    ``SUBMITIT_LOCAL_*`` variables. Exported as the variables an external launcher sets for Lightning's
    default environment (LOCAL_RANK, NODE_RANK, WORLD_SIZE, MASTER_ADDR/PORT: Lightning's "general
    purpose cluster" recipe), each copy joins one process group instead of starting its own ranks.
    On a SLURM cluster nothing is done: srun's SLURM_* variables are read by Lightning's SLURMEnvironment.
    The port follows from the job id, as submitit's TorchDistributedEnvironment derives it, so every task
    agrees on it."""
    import random

    env = os.environ
    if env.get("SUBMITIT_EXECUTOR") != "local" or "LOCAL_RANK" in env or "SLURM_PROCID" in env:
        return
    import submitit

    job = submitit.JobEnvironment()
    if job.num_tasks < 2:
        return
    env.update(
        MASTER_ADDR="127.0.0.1",  # the local executor runs every task on this machine
        MASTER_PORT=env.get("MASTER_PORT", str(random.Random(job.job_id).randint(20000, 60000))),
        RANK=str(job.global_rank),
        WORLD_SIZE=str(job.num_tasks),
        LOCAL_RANK=str(job.local_rank),
        LOCAL_WORLD_SIZE=str(job.num_tasks // job.num_nodes),
        NODE_RANK=str(job.node),
    )


def cluster_tasks_refusal(cfg: DictConfig, overrides: list[str]) -> str | None:
    """Why ``launcher=slurm`` cannot size this job, or None. conf/launcher/slurm.yaml asks SLURM for
    ``hardware.devices`` tasks and GPUs per node (and ``hardware.num_nodes`` nodes) when the job is
    submitted, before it can count GPUs, so a multi-process strategy needs a positive device count there:
    ``hardware=ddp``'s default of -1 ("every visible GPU") would reach sbatch as ``--ntasks-per-node=-1``."""
    if not any(o.startswith("launcher=slurm") for o in overrides):
        return None
    hardware = cfg.get("hardware")
    if not isinstance(hardware, DictConfig) or strategy_family(str(hardware.get("strategy"))) is None:
        return None
    method = cfg.get("method")
    if isinstance(method, DictConfig) and getattr(OmegaConf.get_type(method), "ranks_per_fit", False):
        return (
            f"method={method.get('name')} cannot run its fits on SLURM tasks (launcher=slurm with "
            f"hardware={hardware.get('name')}): it starts the ranks of each fit itself, so every task would "
            "run the whole pipeline. Use launcher=slurm with hardware=gpu (one GPU per job), or run.py on an "
            "allocated node with hardware.devices=N (Lightning starts the ranks for each fit)"
        )
    devices = hardware.get("devices")
    if isinstance(devices, int) and devices > 0:
        return None
    return (
        f"launcher=slurm with hardware={hardware.get('name')} (strategy {hardware.get('strategy')}) needs "
        f"hardware.devices=<GPUs per node>, a positive number such as hardware.devices=4, not {devices!r}: "
        "each job is submitted with that many tasks and GPUs per node (and hardware.num_nodes nodes)"
    )


def worker_launcher_refusal(cfg: DictConfig, overrides: list[str]) -> str | None:
    """Why ``launcher=joblib`` cannot run this multi-process job, or None. Lightning launches ranks 1..N-1
    by re-executing the main script, and a joblib worker's main script is joblib's own (loky), not run.py:
    the ranks die at their first line and the job with them."""
    if not any(o.startswith("launcher=joblib") for o in overrides):
        return None
    hardware = cfg.get("hardware")
    if not isinstance(hardware, DictConfig) or strategy_family(str(hardware.get("strategy"))) is None:
        return None
    return (
        f"launcher=joblib cannot run hardware={hardware.get('name')} (strategy {hardware.get('strategy')}): "
        "Lightning starts the other ranks by re-running the main script, which in a joblib worker is not "
        "run.py. Sweep without launcher=joblib (jobs run one after another, each on all its devices), or "
        "use launcher=slurm, where SLURM starts the ranks"
    )


def tuning_batch_refusal(cfg: DictConfig) -> str | None:
    """A method's ``tuning.batch_size`` that the planned ranks cannot split into equal micro-batches, or
    LoRA under FSDP, said at compose time instead of when the fit starts (data.instructions.tuning)."""
    method, hardware = cfg.get("method"), cfg.get("hardware")
    tuning = method.get("tuning") if isinstance(method, DictConfig) else None
    if not isinstance(tuning, DictConfig) or not isinstance(hardware, DictConfig):
        return None
    if tuning.get("mode") == "lora" and strategy_family(str(hardware.get("strategy"))) == "fsdp":
        # fp32 adapters beside the frozen base's weights in one FSDP unit: FSDP flattens each unit's
        # parameters into one tensor, which must have a single dtype (torch _flat_param.py)
        return (
            "method.tuning.mode=lora cannot use hardware=fsdp: FSDP flattens each decoder layer's parameters "
            "into one tensor of one dtype, and LoRA keeps fp32 adapters beside the frozen base. LoRA's "
            "trainable state is small: use hardware=ddp (or method.tuning.mode=full with fsdp)"
        )
    if "batch_size" not in tuning or "micro_batch_size" not in tuning:
        return None
    if str(hardware.get("devices")) in ("-1", "auto"):  # counted only when the fit starts (needs torch)
        return None
    try:
        accumulation(int(tuning.batch_size), int(tuning.micro_batch_size), planned_world_size(hardware))
    except ValueError as ex:
        return str(ex)
    return None
