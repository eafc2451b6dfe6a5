"""Checkpoint time as a share of ERC's run time at paper size: full-copy checkpoints against incremental ones.

    python bench/erc_checkpoint.py [--task humanoid_run] [--capacity 1000000] [--every 5000] [--utd 5]
                                   [--points 4] [--device cpu] [--step-seconds S] [--json PATH]

At paper scale (conf/budget/off_policy/paper.yaml) a run takes 1M environment steps at 5 updates each, into
a 1M-transition replay buffer, with a checkpoint every 5,000 steps (``checkpoint_every``): 199 checkpoints.

- Step cost: measured here, one environment step (``act`` + ``env.step``) plus ``utd`` ERC updates at batch
  256 on 256-256 MLPs on ``--device``; ``--step-seconds`` replaces it (e.g. a step measured on a GPU).
- Checkpoint cost, at ``--points`` buffer fills N evenly spread over the run (random transitions of the
  task's sizes), through the real service (runners.checkpoint.Checkpointer) with the real agent state:
  - full copy: the buffer's filled rows inline in checkpoint.pt (``ReplayBuffer.state_dict``, what every
    checkpoint wrote before the incremental buffer); its cost grows with N, so the run's total is the
    linear fit over the measured N summed over all checkpoints;
  - incremental: ``ReplayBuffer.save`` writes the ``--every`` transitions since the last checkpoint as one
    chunk, checkpoint.pt holds the manifest; the run's total is the mean cost times the checkpoint count.

share = checkpoint seconds / (steps × step cost + checkpoint seconds). A benchmark reports, it does not
assert: the exit code is 0 whatever the numbers.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported
os.environ.setdefault("MUJOCO_GL", "egl")

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/erc_checkpoint.py` anywhere

import numpy as np
import torch
from lightning.fabric import Fabric

from data.dmc import DMCEnv
from methods.erc.agent import SACAgent
from methods.erc.config import ERCConfig
from runners.checkpoint import Checkpointer
from runners.off_policy.replay import ReplayBuffer

TARGET = 0.02
HIDDEN = [256, 256]


def step_seconds(task: str, utd: int, device: str, repeats: int = 50) -> float:
    """Seconds of one learning step: act, env.step, buffer.add and ``utd`` ERC updates (batch 256)."""
    env = DMCEnv(task, seed=0)
    fabric = Fabric(accelerator=device, devices=1)
    agent = SACAgent(env.obs_dim, env.act_dim, HIDDEN, ERCConfig(), fabric)
    buffer = ReplayBuffer(10_000, env.obs_dim, env.act_dim, np.random.default_rng(0))
    obs = env.reset()
    for _ in range(1000):  # real transitions to sample from
        action = np.random.uniform(-1, 1, env.act_dim).astype(np.float32)
        next_obs, reward, terminal, truncated = env.step(action)
        buffer.add(obs, action, reward, next_obs, terminal)
        obs = env.reset() if terminal or truncated else next_obs

    def one_step() -> None:
        nonlocal obs
        action = agent.act(obs, deterministic=False)
        next_obs, reward, terminal, truncated = env.step(action)
        buffer.add(obs, action, reward, next_obs, terminal)
        obs = env.reset() if terminal or truncated else next_obs
        for _ in range(utd):
            agent.update(buffer.sample(256, fabric.device))

    for _ in range(10):  # warm-up: allocator, kernels
        one_step()
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        one_step()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def fill(buffer: ReplayBuffer, upto: int, rng: np.random.Generator) -> None:
    """Add random transitions until ``upto`` have been added (vectorised, as ``add`` would leave them)."""
    first = buffer.added
    n = upto - first
    slots = np.arange(first, upto) % buffer.capacity
    for key in ("obs", "next_obs", "act"):
        getattr(buffer, key)[slots] = rng.standard_normal((n, getattr(buffer, key).shape[1]), np.float32)
    buffer.rew[slots] = rng.standard_normal(n, np.float32)
    buffer.not_done[slots] = 1.0
    buffer.added = upto
    buffer.size = min(upto, buffer.capacity)
    buffer.ptr = upto % buffer.capacity


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--task", default="humanoid_run", help="the paper's task with the largest transitions"
    )
    parser.add_argument("--capacity", type=int, default=1_000_000, help="buffer size = steps of the run")
    parser.add_argument("--every", type=int, default=5000, help="checkpoint_every (env steps)")
    parser.add_argument("--utd", type=int, default=5)
    parser.add_argument("--points", type=int, default=4, help="buffer fills at which checkpoints are timed")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--step-seconds", type=float, default=None, help="use this step cost, not measured")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.getLogger("lightning.fabric").setLevel(logging.WARNING)

    measured = step_seconds(args.task, args.utd, args.device) if args.step_seconds is None else None
    step_s = args.step_seconds if args.step_seconds is not None else measured
    env = DMCEnv(args.task, seed=0)
    agent = SACAgent(env.obs_dim, env.act_dim, HIDDEN, ERCConfig(), Fabric(accelerator="cpu", devices=1))
    buffer = ReplayBuffer(args.capacity, env.obs_dim, env.act_dim, np.random.default_rng(0))
    row_bytes = sum(getattr(buffer, k)[0].nbytes for k in ("obs", "next_obs", "act", "rew", "not_done"))
    n_ckpt = len(range(args.every, args.capacity, args.every))  # none at the last step
    fills = [round(f) // args.every * args.every for f in np.linspace(0, args.capacity, args.points + 1)[1:]]
    fills[-1] -= args.every  # the last checkpoint is one interval before the end
    rng = np.random.default_rng(0)

    full, incremental = [], []
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR", "/tmp")) as tmp:
        root = Path(tmp)
        replay_dir = root / "checkpoints" / "replay"
        for n in fills:
            fill(buffer, n - args.every, rng)
            buffer.save(replay_dir)  # the chunks of every earlier checkpoint (untimed)
            fill(buffer, n, rng)

            def save_incremental(n: int = n) -> None:
                state = {"agent": agent.state_dict(), "buffer": buffer.save(replay_dir), "step": n}
                Checkpointer(root / "incremental.pt").save(state)

            def save_full(n: int = n) -> None:
                state = {"agent": agent.state_dict(), "buffer": buffer.state_dict(), "step": n}
                Checkpointer(root / "full.pt").save(state)

            incremental.append(timed(save_incremental))
            full.append(timed(save_full))
            (root / "full.pt").unlink()
            state_mb = (root / "incremental.pt").stat().st_size / 1e6
            print(
                f"N={n:>9,}  full copy {full[-1]:7.3f} s ({state_mb:.1f} MB state + "
                f"{n * row_bytes / 1e9:.2f} GB buffer)   incremental {incremental[-1]:7.3f} s "
                f"({args.every:,} new transitions)"
            )

    slope, intercept = np.polyfit(fills, full, 1) if len(fills) > 1 else (full[0] / fills[0], 0.0)
    at = np.arange(1, n_ckpt + 1) * args.every
    totals = {
        "full copy": float(np.sum(intercept + slope * at)),
        "incremental": float(np.mean(incremental)) * n_ckpt,
    }
    train = args.capacity * step_s
    shares = {name: t / (train + t) for name, t in totals.items()}

    source = f"measured on {args.device}" if measured is not None else "given (--step-seconds)"
    print(
        f"\ntask {args.task}: {row_bytes} B/transition; {args.capacity:,} steps, UTD {args.utd}, "
        f"checkpoint every {args.every:,} steps ({n_ckpt} checkpoints)"
    )
    print(f"step cost {step_s * 1e3:.2f} ms ({source}) -> training {train / 3600:.2f} h")
    for name in totals:
        print(f"{name:<12} checkpoints {totals[name]:9.1f} s in all = {100 * shares[name]:.3f}% of run time")
    # The step cost below which each scheme would exceed the target (a faster accelerator, say).
    for name, t in totals.items():
        break_even_ms = t * (1 - TARGET) / TARGET / args.capacity * 1e3
        print(f"  {name}: over {100 * TARGET:.0f}% once a step costs < {break_even_ms:.3f} ms")
    share = shares["incremental"]
    verdict = "PASS" if share < TARGET else "MISS"
    print(f"TARGET checkpoint share of run time: {100 * share:.3f}% (target < 2%) {verdict}")

    if args.json is not None:
        record = {
            "task": args.task,
            "capacity": args.capacity,
            "every": args.every,
            "utd": args.utd,
            "device": args.device,
            "step_seconds": step_s,
            "step_source": source,
            "fills": fills,
            "full_seconds": full,
            "incremental_seconds": incremental,
            "totals": totals,
            "shares": shares,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
