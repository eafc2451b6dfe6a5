"""A pytest plugin that runs the paper rehearsals on a GPU: `pytest -p tests.paper.gpu_rehearsal ...` with
REPROLAB_REHEARSAL_HARDWARE=gpu (bench/gpu_check.sh does this when a GPU is lent).

The rehearsals pass ``hardware=cpu`` (or ``hardware.name=cpu hardware.accelerator=cpu``) to every
``run.py`` they start, because these machines have no GPU. This plugin swaps those test-side overrides
for the GPU's, in the command line only: run.py, the configs and the methods see an ordinary
``hardware=gpu`` command and cannot tell. Each run.py it starts is logged (argv, exit status, seconds) as one
JSON line to REPROLAB_REHEARSAL_LOG, so the check can say which run of a rehearsal failed. A rehearsal
that asserts its record says ``accelerator == "cpu"`` then fails on that assertion alone; the log tells the
two apart."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Sequence

# The hardware overrides the rehearsals use for "no GPU here", and what each becomes on a GPU.
CPU_OVERRIDES = ("hardware=", "hardware.name=", "hardware.accelerator=")


def on_hardware(argv: Sequence[str], hardware: str) -> list[str]:
    """``argv`` with each ``hardware=cpu``, ``hardware.name=cpu``, ``hardware.accelerator=cpu`` set to
    ``hardware`` (gpu); everything else as it was."""
    return [
        f"{a.split('=', 1)[0]}={hardware}" if a in {f"{k}cpu" for k in CPU_OVERRIDES} else a for a in argv
    ]


def _is_run_py(argv: object) -> bool:
    return isinstance(argv, list | tuple) and any(
        str(a) == "run.py" or str(a).endswith("/run.py") for a in argv
    )


_original_run = subprocess.run


def _run(args, *pargs, **kwargs):  # subprocess.run's signature
    hardware = os.environ.get("REPROLAB_REHEARSAL_HARDWARE", "")
    if not hardware or not _is_run_py(args):
        return _original_run(args, *pargs, **kwargs)
    args = on_hardware([str(a) for a in args], hardware)
    t0 = time.perf_counter()
    result = _original_run(args, *pargs, **kwargs)
    if log := os.environ.get("REPROLAB_REHEARSAL_LOG"):
        tail = (result.stderr or "")[-400:] if isinstance(result.stderr, str) else ""
        entry = {"argv": args, "returncode": result.returncode, "seconds": time.perf_counter() - t0}
        with open(log, "a") as f:
            f.write(json.dumps({**entry, "stderr_tail": tail}) + "\n")
    return result


def pytest_configure(config) -> None:
    """Loaded only with ``-p tests.paper.gpu_rehearsal``; inert without REPROLAB_REHEARSAL_HARDWARE."""
    subprocess.run = _run


def pytest_unconfigure(config) -> None:
    subprocess.run = _original_run


def verdict(runs: list[dict], output: list[str], returncode: int) -> str:
    """bench/gpu_check.sh's word for one rehearsal, then its detail: PASS (pytest passed), RAN (every
    run.py exited 0 but a later assertion failed), FAIL (a run.py failed, or none ran)."""
    failed = [r for r in runs if r["returncode"] != 0]
    assertion = next((ln[1:].strip() for ln in output if ln.startswith("E ")), output[-1] if output else "")
    if returncode == 0:
        return f"PASS run.py x{len(runs)}"
    if runs and not failed:
        return f"RAN run.py x{len(runs)} all exited 0; pytest rc={returncode}: {assertion[:140]}"
    if failed:
        last = [ln for ln in failed[0].get("stderr_tail", "").splitlines() if ln.strip()][-1:] or [""]
        return f"FAIL run.py rc={failed[0]['returncode']}: {last[0][:140]}"
    return f"FAIL pytest rc={returncode} before any run.py: {assertion[:140]}"


if __name__ == "__main__":  # python -m tests.paper.gpu_rehearsal <log.jsonl> <pytest output> <pytest rc>
    import sys

    with open(sys.argv[1]) as f:
        logged = [json.loads(line) for line in f if line.strip()]
    with open(sys.argv[2], errors="replace") as f:
        print(verdict(logged, f.read().splitlines(), int(sys.argv[3])))
