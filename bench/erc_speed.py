"""Environment steps per second, gradient updates included, of our SAC/ERC loop against stable-baselines3
and SBX (stable-baselines3 in JAX, the ``bench`` extra: ``make install-bench``).

    python bench/erc_speed.py [--task cartpole_swingup] [--steps 3000] [--repeats 5] [--threads 1] [--json P]
    python bench/erc_speed.py --quick   # a smoke run of the bench itself (no SBX): not a measurement

All learners run in this process on the same DMControl task (action repeat 1) with the same torch
thread count, update-to-data ratio 1, batch 256, 256-256 MLPs and 256 uniformly random steps before
learning starts. Ours is the real loop, ``ERC(**cfg).run(ctx, fabric)``; its final evaluation is switched
off by a bench-only subclass (see ``NoEvalERC``) so only training is timed. A benchmark reports, it does not
assert: the exit code is 0 whatever the numbers.

Robust to load from elsewhere (a shared machine): after one untimed warm-up run per learner (imports, MuJoCo
compilation, XLA's jit), the timed runs go in rounds; each round runs every learner once on the same number
of steps, in an order reversed every other round, and each ratio is taken within a round. A target's value
is the median of its per-round ratios, printed with their range; a burst of load skews one round, not the
median.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported, so intra-op pools start small
os.environ.setdefault("MUJOCO_GL", "egl")
# JAX (SBX) on the CPU, as ours and SB3 run; main() sets XLA_FLAGS from --threads before SBX is imported.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/erc_speed.py` from anywhere

import gymnasium as gym
import numpy as np
import torch
from omegaconf import OmegaConf
from stable_baselines3 import SAC

from bench.targets import Target, print_targets
from data.dmc import DMCEnv
from methods.erc.method import ERC
from runners.context import RunContext
from runners.loop_runner import make_fabric

LEARNING_STARTS = 256
BATCH_SIZE = 256
HIDDEN = [256, 256]
TARGETS = {  # ratio name -> (numerator, denominator, minimum)
    "ours SAC / SB3 SAC": ("ours SAC", "SB3 SAC", 1.5),
    "ours ERC / SB3 SAC": ("ours ERC", "SB3 SAC", 1.5),
    "ours ERC / ours SAC": ("ours ERC", "ours SAC", 0.9),
    # Issue 17: against SBX (SB3 in JAX, every update one jitted XLA program), at the same work.
    # SB3's schedule: actor and alpha every step (ours policy_every=1, SBX policy_delay=1).
    "ours SAC pe1 / SBX SAC": ("ours SAC pe1", "SBX SAC", 1.0),
    # The official ERC schedule: actor and alpha every 2nd step (SBX also moves its targets every step).
    "ours SAC / SBX SAC pd2": ("ours SAC", "SBX SAC pd2", 1.0),
    # Information only: our SAC doing SB3's amount of work per step (actor, α, target every step).
    "ours SAC pe1 / SB3 SAC": ("ours SAC pe1", "SB3 SAC", None),
}


class NoEvalERC(ERC):
    """The real ERC loop minus evaluation episodes.

    ``run`` always evaluates at its last step (``step == total_steps``); a 1000-step deterministic
    episode would be timed as training. Returning a constant here removes it. The TD-error probe that
    follows each evaluation stays, but with ``td_probe_size`` = batch size it costs one forward pass.
    """

    def evaluate(self, agent: Any, env: Any, episodes: int, seed: int) -> float:
        return 0.0


class GymDMC(gym.Env):
    """data.dmc.DMCEnv as a gymnasium.Env, for stable-baselines3: float32 Box spaces in [-1, 1]."""

    def __init__(self, task: str, seed: int = 0) -> None:
        self.env = DMCEnv(task, action_repeat=1, seed=seed)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (self.env.obs_dim,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (self.env.act_dim,), np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        if seed is not None:
            self.env.seed(seed)
        return self.env.reset(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        obs, reward, terminal, truncated = self.env.step(action)
        return obs, reward, terminal, truncated, {}


def time_ours(task: str, beta: float, steps: int, policy_every: int = 2, seed: int = 0) -> float:
    """Seconds for ``ERC(**cfg).run(ctx, fabric)`` over LEARNING_STARTS + ``steps`` env steps.

    The timer covers building the method and Fabric and the whole ``run`` (env and agent construction
    included), as the SB3 timer covers building its model and ``learn``.
    """
    total = LEARNING_STARTS + steps
    method_cfg = dict(
        beta=beta,
        name="erc" if beta > 0 else "sac",
        batch_size=BATCH_SIZE,
        utd_ratio=1,
        policy_every=policy_every,
        learning_starts=LEARNING_STARTS,
        total_steps=total,
        buffer_size=total,
        eval_every=total + 1,  # no periodic evaluation; the final one is stubbed out by NoEvalERC
        eval_episodes=1,
        td_probe_size=BATCH_SIZE,
    )
    cfg = OmegaConf.create(
        {
            "env": {"_target_": "data.dmc.DMCEnv", "task": task, "action_repeat": 1},
            "model": {"name": "mlp", "hidden_dims": HIDDEN},
            "hardware": {
                "accelerator": "cpu",
                "devices": 1,
                "num_nodes": 1,
                "strategy": "auto",
                "precision": "32-true",
            },
            "scale": {"name": "bench"},
            "seed": seed,
            "checkpoint_every": 0,
        }
    )
    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as out_dir:
        ctx = RunContext(cfg=cfg, out_dir=Path(out_dir), loggers=[])
        start = time.perf_counter()
        NoEvalERC(**method_cfg).run(ctx, make_fabric(ctx))
        return time.perf_counter() - start


def sb3_settings(task: str, total: int, seed: int) -> dict[str, Any]:
    """What SB3's and SBX's SAC share with ours: networks, batch, learning starts, one gradient step per
    env step, a buffer holding the whole run."""
    return dict(
        policy="MlpPolicy",
        env=GymDMC(task, seed=seed),
        batch_size=BATCH_SIZE,
        learning_starts=LEARNING_STARTS,
        train_freq=1,
        gradient_steps=1,
        buffer_size=total,
        policy_kwargs=dict(net_arch=HIDDEN),
        seed=seed,
        verbose=0,
    )


def time_sb3(task: str, steps: int, seed: int = 0) -> float:
    """Seconds to build stable-baselines3's SAC and ``learn`` LEARNING_STARTS + ``steps`` env steps."""
    total = LEARNING_STARTS + steps
    start = time.perf_counter()
    SAC(device="cpu", **sb3_settings(task, total, seed)).learn(total)
    return time.perf_counter() - start


def make_sbx(task: str, total: int, policy_delay: int = 1, seed: int = 0) -> Any:
    """SBX's SAC (stable-baselines3 in JAX, the ``bench`` extra) set up as ours and SB3's are.

    Same networks (256-256, two critics), batch, learning starts and one gradient step per env step;
    ``policy_delay`` is SBX's name for our ``policy_every`` (its targets still move every critic step).
    """
    from sbx import SAC as SBXSAC  # the bench extra; imported here so the other learners run without it

    return SBXSAC(policy_delay=policy_delay, **sb3_settings(task, total, seed))


def time_sbx(task: str, steps: int, policy_delay: int = 1, seed: int = 0) -> float:
    """Seconds to build SBX's SAC and ``learn`` LEARNING_STARTS + ``steps`` env steps.

    As for SB3, building the model is timed; so is XLA's compilation of its update, which each new
    model pays again in its first learning step (a cost an SBX user pays once per run too).
    """
    total = LEARNING_STARTS + steps
    start = time.perf_counter()
    make_sbx(task, total, policy_delay, seed).learn(total)
    return time.perf_counter() - start


def sbx_available() -> bool:
    try:
        import sbx  # noqa: F401
    except ImportError:
        return False
    return True


def compute_ratios(rows: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each of TARGETS' steps/s ratios: the median over rounds of the ratio within a round, and its range.

    A row's ``round_steps_per_second`` lists its steps/s round by round (one value, ``steps_per_second``,
    where absent); value None where a learner did not run (SBX not installed).
    """
    ratios = {}
    for ratio, (num, den, target) in TARGETS.items():
        if num not in rows or den not in rows:
            ratios[ratio] = {"value": None, "low": None, "high": None, "target": target, "pass": None}
            continue
        per_round = [
            a / b
            for a, b in zip(
                rows[num].get("round_steps_per_second", [rows[num]["steps_per_second"]]),
                rows[den].get("round_steps_per_second", [rows[den]["steps_per_second"]]),
                strict=True,
            )
        ]
        value = float(np.median(per_round))
        verdict = None if target is None else value >= target
        ratios[ratio] = {
            "value": value,
            "low": min(per_round),
            "high": max(per_round),
            "target": target,
            "pass": verdict,
        }
    return ratios


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="cartpole_swingup")
    parser.add_argument("--steps", type=int, default=3000, help="learning steps after the random ones")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads for every learner")
    parser.add_argument("--warmup", type=int, default=300, help="learning steps of the untimed warm-up runs")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (every learner once per round)")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    parser.add_argument(
        "--cores",
        type=int,
        default=1,
        help="CPU cores the process may use (sched_setaffinity; 0: all). XLA keeps helper threads even "
        "with its Eigen pool off, so only pinning makes '1 thread' true for SBX as it is for torch",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke-test the bench: 16 steps, 2 rounds, no SBX; not a measurement",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.warmup, args.repeats = 16, 4, 2

    if args.cores > 0 and hasattr(os, "sched_setaffinity"):  # before JAX starts its threads
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args.cores])
    torch.set_num_threads(args.threads)
    if args.threads == 1:  # XLA's CPU intra-op (Eigen) pool off: SBX on one thread, as torch is
        os.environ["XLA_FLAGS"] = (
            os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false"
        ).strip()
    logging.getLogger("lightning.fabric").setLevel(logging.WARNING)
    learners = {
        "ours SAC": lambda n: time_ours(args.task, 0.0, n),
        "ours ERC": lambda n: time_ours(args.task, 0.005, n),
        "SB3 SAC": lambda n: time_sb3(args.task, n),
        "ours SAC pe1": lambda n: time_ours(args.task, 0.0, n, policy_every=1),
    }
    if args.quick:
        print("--quick: a smoke run of the bench (SBX's jit left out); its numbers mean nothing")
    elif sbx_available():
        learners["SBX SAC"] = lambda n: time_sbx(args.task, n, policy_delay=1)
        learners["SBX SAC pd2"] = lambda n: time_sbx(args.task, n, policy_delay=2)
    else:
        print("sbx is not installed (`make install-bench`): the SBX ratios have no value")

    # One untimed short run of each first: imports, MuJoCo model compilation, allocator and kernel
    # first-call costs land here, not in the timed runs.
    for run in learners.values():
        run(args.warmup)

    # Rounds: every learner once per round, the order reversed every other round, so a burst of load
    # from elsewhere hits the two sides of a ratio alike; ratios are taken within a round (compute_ratios).
    total = LEARNING_STARTS + args.steps
    seconds: dict[str, list[float]] = {name: [] for name in learners}
    for i in range(args.repeats):
        order = list(learners) if i % 2 == 0 else list(reversed(learners))
        for name in order:
            seconds[name].append(learners[name](args.steps))
    rows = {
        name: {
            "steps": total,
            "seconds": float(np.median(s)),
            "steps_per_second": total / float(np.median(s)),
            "round_steps_per_second": [total / x for x in s],
            "all_seconds": s,
        }
        for name, s in seconds.items()
    }

    ratios = compute_ratios(rows)

    print(
        f"\ntask {args.task}, torch threads {torch.get_num_threads()}, OMP_NUM_THREADS "
        f"{os.environ.get('OMP_NUM_THREADS')}, torch {torch.__version__}"
    )
    print(
        f"each run: {LEARNING_STARTS} random steps, then {args.steps} steps with one update each "
        f"(batch {BATCH_SIZE}, MLPs {HIDDEN}); steps/s counts all {total} env steps"
    )
    print(
        f"warm-up: one untimed run of {args.warmup} learning steps per learner; "
        f"timed: {args.repeats} interleaved round(s), each ratio the median of per-round ratios [range]"
    )
    print("timed: building the learner (envs, nets, optimisers) + the whole training run, no evaluation")
    print("  (ours: the bar's 'return 0.0' is the stubbed-out final evaluation; SB3 SAC: model.learn)")
    print("ours updates actor, alpha and targets every 2nd critic step (policy_every=2, the ERC code's")
    print("  default), SB3 every step; 'ours SAC pe1' is ours with policy_every=1, the same work as SB3;")
    print("  SBX SAC (JAX, one jitted program per update) every step, 'SBX SAC pd2' with policy_delay=2")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "all"
    print(f"  (SBX's JAX on the CPU, XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}; {cores} core(s))\n")
    print(f"{'learner':<13} {'steps':>7} {'median s':>9} {'steps/s':>9}  seconds per round")
    for name, row in rows.items():
        per_round = " ".join(f"{x:.2f}" for x in row["all_seconds"])
        sps = row["steps_per_second"]
        print(f"{name:<13} {row['steps']:>7} {row['seconds']:>9.2f} {sps:>9.1f}  {per_round}")
    print()
    for ratio, r in ratios.items():
        if r["value"] is not None:
            kind = "info" if r["target"] is None else f"target >= {r['target']:g}"
            print(f"{ratio:<23} median {r['value']:5.3f}  range [{r['low']:.3f}, {r['high']:.3f}]  ({kind})")
    print()

    def spread(r: dict[str, Any]) -> str:
        if r["value"] is None:
            return ""
        return f"range {r['low']:.3f}-{r['high']:.3f}" + (
            "; --quick: not a measurement" if args.quick else ""
        )

    targets = [
        Target(name, r["value"], r["target"], note=spread(r))
        for name, r in ratios.items()
        if r["target"] is not None
    ]
    print_targets(targets, "targets (steps/s ratios, median over interleaved rounds)")
    for t in targets:  # the one-line form, for grep
        value = "-" if t.value is None else f"{t.value:.3f}"
        verdict = {True: "PASS", False: "MISS", None: "NO VALUE"}[t.passed]
        note = f" [{t.note}]" if t.note else ""
        print(f"TARGET {t.name}: {value} (target >= {t.bound:g}) {verdict}{note}")

    if args.json is not None:
        record = {
            "task": args.task,
            "threads": torch.get_num_threads(),
            "learning_starts": LEARNING_STARTS,
            "steps": args.steps,
            "warmup": args.warmup,
            "repeats": args.repeats,
            "learners": rows,
            "ratios": ratios,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=2) + "\n")
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
