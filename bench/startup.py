"""How long the CLI takes before any run starts, and whether config composition stays free of heavy imports.

    python bench/startup.py [--repeats 3]

Each measurement is a fresh subprocess (nothing cached in-process); the median of ``--repeats`` counts.
`--help` and config errors should be instant, which holds only while composing a config imports none of
torch, dm-control, MuJoCo, transformers or Lightning. A benchmark reports: the exit code is always 0.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "dm_control", "mujoco", "transformers", "lightning")
# Issue 12: `--help` under 1 s (it took 2.56 s when Hydra listed the groups itself); the rest as fast.
TARGET_SECONDS = 1.0
INTERNAL_GROUPS = ("budget/", "schema/")

# What run.py does before hydra.main, then which heavy modules that pulled in.
PREFLIGHT = f"""
import sys
from runners.schemas import register_all
register_all()
from runners.validate import validate_overrides
validate_overrides([])
print(",".join(m for m in {HEAVY!r} if m in sys.modules))
"""

# The whole of `python run.py --cfg job`, reporting sys.modules at exit (stderr, after Hydra's output).
RUN_CFG_JOB = f"""
import atexit, runpy, sys
atexit.register(lambda: print(",".join(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr))
sys.argv = ["run.py", "--cfg", "job"]
runpy.run_path("run.py", run_name="__main__")
"""


def child_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}


def wall_time(args: list[str], repeats: int) -> tuple[float, int]:
    """Median wall seconds of ``python <args>`` in fresh processes, and the last exit code."""
    times, rc = [], 0
    for _ in range(repeats):
        start = time.perf_counter()
        rc = subprocess.run(
            [sys.executable, *args], cwd=ROOT, env=child_env(), capture_output=True, check=False
        ).returncode
        times.append(time.perf_counter() - start)
    return statistics.median(times), rc


def heavy_modules(code: str, stream: str) -> list[str] | None:
    """Heavy modules imported by ``code`` run in a fresh interpreter; None if the child failed."""
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=child_env(), capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        print(proc.stderr[-2000:], file=sys.stderr)
        return None
    lines = getattr(proc, stream).strip().splitlines()
    return [m for m in lines[-1].split(",") if m] if lines else []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    print(
        f"python {sys.version.split()[0]}: median of {args.repeats} fresh subprocesses; "
        f"target < {TARGET_SECONDS} s"
    )
    print(f"{'command':<28} {'seconds':>8} {'rc':>3}  verdict")
    for label, cmd, want_rc in (
        ("run.py --help", ["run.py", "--help"], 0),
        ("run.py --cfg job", ["run.py", "--cfg", "job"], 0),
        ("run.py seed=abc", ["run.py", "seed=abc"], 2),
    ):
        seconds, rc = wall_time(cmd, args.repeats)
        verdict = "PASS" if seconds < TARGET_SECONDS and rc == want_rc else "MISS"
        print(f"python {label:<21} {seconds:>8.2f} {rc:>3}  {verdict}")

    help_text = subprocess.run(
        [sys.executable, "run.py", "--help"], cwd=ROOT, env=child_env(), capture_output=True, text=True
    ).stdout
    shown = sorted(
        {line.split(":")[0] for line in help_text.splitlines() if line.startswith(INTERNAL_GROUPS)}
    )
    print(
        f"\ninternal groups in --help ({', '.join(INTERNAL_GROUPS)}): {', '.join(shown) or 'none'}  "
        f"{'MISS' if shown else 'PASS'}"
    )

    print(f"\nheavy modules ({', '.join(HEAVY)}) imported; target: none")
    for label, code, stream in (
        ("pre-flight composition", PREFLIGHT, "stdout"),
        ("run.py --cfg job", RUN_CFG_JOB, "stderr"),
    ):
        found = heavy_modules(code, stream)
        if found is None:
            print(f"{label:<28} child process failed (stderr above)  MISS")
        else:
            print(f"{label:<28} {', '.join(found) or 'none':<30} {'MISS' if found else 'PASS'}")


if __name__ == "__main__":
    main()
