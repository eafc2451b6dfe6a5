"""bench/gpu_check.sh is safe on any machine: without CUDA it says so in one line and exits 0."""

from __future__ import annotations

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
