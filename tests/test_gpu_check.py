"""bench/gpu_check.sh is safe on any machine: without CUDA it says so in one line and exits 0."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="runs the real check on a GPU machine")
def test_gpu_check_skips_cleanly_without_cuda() -> None:
    out = subprocess.run(
        ["bash", "bench/gpu_check.sh", sys.executable], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines() == [
        f"gpu_check SKIP: no CUDA device visible to torch ({sys.executable})"
    ]


def test_dry_run_plans_every_rehearsal_on_the_gpu_and_both_benchmarks() -> None:
    """--dry-run needs no GPU: one plan line per tests/paper/test_<method>_paper.py rehearsal, with the
    plugin that swaps hardware=cpu for gpu, plus the H2O and SBCL benchmarks and the ddp/fsdp smoke runs."""
    out = subprocess.run(
        ["bash", "bench/gpu_check.sh", sys.executable, "--dry-run"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    plans = dict(line.split(": ", 1) for line in out.stdout.strip().splitlines())
    methods = sorted(
        p.name[len("test_") : -len("_paper.py")] for p in (ROOT / "tests/paper").glob("test_*_paper.py")
    )
    assert len(methods) >= 10
    for m in methods:
        cmd = plans.pop(f"gpu_check plan rehearsal-{m}")
        assert "REPROLAB_REHEARSAL_HARDWARE=gpu" in cmd and "-p tests.paper.gpu_rehearsal" in cmd
        assert cmd.endswith(f"-m slow -k rehearsal tests/paper/test_{m}_paper.py")
    assert "bench/h2o_speed.py --quick" in plans.pop("gpu_check plan h2o-speed")
    assert "bench/sbcl_epoch.py" in plans.pop("gpu_check plan sbcl-epoch")
    assert "method=ifd hardware=fsdp" in plans.pop("gpu_check plan ifd-fsdp")
    assert sorted(plans) == [f"gpu_check plan {m}-ddp" for m in ("diffusion_cls", "ifd", "mera", "sbcl")]


def test_rehearsal_plugin_swaps_only_the_cpu_hardware_overrides() -> None:
    from tests.paper.gpu_rehearsal import on_hardware

    argv = ["run.py", "-m", "hardware=cpu", "hardware.name=cpu", "hardware.accelerator=cpu", "data.name=cpu"]
    assert on_hardware(argv, "gpu") == [
        "run.py",
        "-m",
        "hardware=gpu",
        "hardware.name=gpu",
        "hardware.accelerator=gpu",
        "data.name=cpu",
    ]
    assert on_hardware(["run.py", "hardware.precision=32-true"], "gpu") == [
        "run.py",
        "hardware.precision=32-true",
    ]


def test_rehearsal_plugin_rewrites_and_logs_each_run_py_a_test_starts(tmp_path: Path) -> None:
    """Loaded with -p, the plugin changes the command a test's subprocess.run starts (here a python -c that
    prints its argv in place of run.py) and logs it; other commands pass through untouched."""
    test = tmp_path / "test_child.py"
    test.write_text(
        "import subprocess, sys\n"
        "def test_child():\n"
        "    code = 'import sys; print(sys.argv[1:])'\n"
        "    r = subprocess.run([sys.executable, '-c', code, 'run.py', 'hardware=cpu'], capture_output=True,"
        " text=True)\n"
        "    assert r.stdout.strip() == \"['run.py', 'hardware=gpu']\", r.stdout\n"
        "    r = subprocess.run([sys.executable, '-c', code, 'hardware=cpu'], capture_output=True,"
        " text=True)\n"
        "    assert r.stdout.strip() == \"['hardware=cpu']\", r.stdout\n"
    )
    log = tmp_path / "runs.jsonl"
    env = {**os.environ, "REPROLAB_REHEARSAL_HARDWARE": "gpu", "REPROLAB_REHEARSAL_LOG": str(log)}
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.paper.gpu_rehearsal"]
    out = subprocess.run([*args, str(test)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    (entry,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert entry["argv"][-2:] == ["run.py", "hardware=gpu"] and entry["returncode"] == 0
    assert entry["seconds"] > 0


def test_verdict_tells_a_failed_run_from_a_failed_cpu_assertion() -> None:
    from tests.paper.gpu_rehearsal import verdict

    ok = {"argv": ["run.py"], "returncode": 0, "stderr_tail": ""}
    bad = {"argv": ["run.py"], "returncode": 1, "stderr_tail": "Traceback\nCUDA out of memory\n"}
    output = ["F", "E       AssertionError: assert 'gpu' == 'cpu'", "1 failed"]
    assert verdict([ok], ["1 passed"], 0) == "PASS run.py x1"
    assert verdict([ok, ok], output, 1).startswith("RAN run.py x2 all exited 0; pytest rc=1: AssertionError")
    assert verdict([ok, bad], output, 1) == "FAIL run.py rc=1: CUDA out of memory"
    assert verdict([], ["ERROR collecting"], 2) == "FAIL pytest rc=2 before any run.py: ERROR collecting"
