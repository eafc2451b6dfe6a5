"""SBCL under data parallelism: the contrastive loss of 2 ranks × batch B is the loss of 1 rank × 2B (the
features are all-gathered with gradients), and `hardware=ddp` on 2 CPU processes (gloo) runs through
run.py with one results record, written by rank 0 only."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from methods.sbcl.loss import gather_batch, global_view_major, sbcl_loss

WORLD, B, D = 2, 6, 8


def _global_batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A global batch of WORLD·B images as WORLD view-major rank blocks (2B, D) each, with labels/subs."""
    g = torch.Generator().manual_seed(seed)
    z = torch.nn.functional.normalize(torch.randn(WORLD, 2 * B, D, generator=g), dim=-1)
    y = torch.randint(0, 3, (WORLD, B), generator=g)
    s = 2 * y + torch.randint(0, 2, (WORLD, B), generator=g)  # two subclasses per class
    return z, y, s


def _single_process(z: torch.Tensor, y: torch.Tensor, s: torch.Tensor) -> tuple[float, torch.Tensor]:
    """The loss of the whole batch in one process, and its gradient w.r.t. each rank's block."""
    blocks = z.clone().requires_grad_(True)
    full = global_view_major(list(blocks))
    tau = torch.tensor([0.1, 0.12, 0.09])
    loss = sbcl_loss(full, y.flatten(), s.flatten(), 0.1, 0.07, 0.25, tau).loss
    loss.backward()
    return float(loss.detach()), blocks.grad


def test_global_view_major_keeps_each_rows_other_view() -> None:
    z = _global_batch()[0]
    full = global_view_major(list(z))
    n = full.shape[0]
    assert n == 2 * WORLD * B
    # row r·B + i is image i of rank r, view 1; its view 2 sits n/2 rows later
    for r in range(WORLD):
        for i in range(B):
            assert torch.allclose(full[r * B + i], z[r, i])
            assert torch.allclose(full[r * B + i + n // 2], z[r, B + i])


def _rank(rank: int, store: str, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD)
    try:
        z, y, s = _global_batch()
        local = z[rank].clone().requires_grad_(True)
        gz, gy, gs = gather_batch(local, y[rank], s[rank])
        tau = torch.tensor([0.1, 0.12, 0.09])
        loss = sbcl_loss(gz, gy, gs, 0.1, 0.07, 0.25, tau).loss
        loss.backward()
        torch.save({"loss": float(loss), "grad": local.grad}, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_ranks_give_the_loss_and_gradient_of_one_rank_with_the_whole_batch(tmp_path: Path) -> None:
    import torch.multiprocessing as mp

    z, y, s = _global_batch()
    want_loss, want_grad = _single_process(z, y, s)
    out = str(tmp_path / "rank")
    mp.spawn(_rank, args=(str(tmp_path / "store"), out), nprocs=WORLD, join=True)
    for rank in range(WORLD):
        got = torch.load(f"{out}.{rank}")
        assert got["loss"] == pytest.approx(want_loss, rel=1e-5, abs=1e-6)
        # all_gather's backward sums every rank's gradient into each slice (W × dL/dz_r); DDP's mean over
        # ranks then gives the parameters exactly the one-process gradient.
        torch.testing.assert_close(got["grad"] / WORLD, want_grad[rank], rtol=1e-4, atol=1e-6)
    # and the local-batch loss (no gather) would differ: the negatives change with the number of ranks
    local = sbcl_loss(z[0], y[0], s[0], 0.1, 0.07, 0.25, torch.tensor([0.1, 0.12, 0.09])).loss
    assert abs(float(local) - want_loss) > 1e-3


def test_gather_outside_a_process_group_is_the_identity() -> None:
    z, y, s = (t[0] for t in _global_batch())
    gz, gy, gs = gather_batch(z, y, s)
    assert gz is z and gy is y and gs is s


@pytest.mark.slow
def test_sbcl_smoke_ddp_two_cpu_processes_through_run_py(cli, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    out = cli(
        "method=sbcl",
        "scale=smoke",
        "hardware=ddp",
        "hardware.accelerator=cpu",
        "hardware.devices=2",
        "hardware.precision=32-true",
        f"hydra.run.dir={run_dir}",
        env={"WANDB_MODE": "offline", "WANDB_SILENT": "true"},
        timeout=240,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in out.stdout + out.stderr
    record = json.loads((run_dir / "results.json").read_text())
    assert record["status"] == "completed"
    assert len(record["attempts"]) == 1 and record["attempts"][0]["status"] == "completed"
    m = record["metrics"]
    for key in ("acc", "balanced_acc", "head_acc", "medium_acc", "tail_acc"):
        assert 0.0 <= m[key] <= 1.0
    # k-means ran (on rank 0, broadcast): 37 subclasses, every id inside its class's range
    assert m["sub/num_subclasses"] == pytest.approx(37.0) and m["sub/ids_in_range"] == pytest.approx(1.0)
    assert len(record["curves"]["train_loss"]) == 4
    # one W&B run (rank 0's), one lock holder, rank 1 left no record of its own
    runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, runs
    assert not list(run_dir.glob("**/results.json.*"))
    assert (run_dir / "checkpoints" / "last.ckpt").exists()
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    ranks = ckpt["callbacks"]["reprolab_resume"]["ranks"]
    assert len(ranks) == 2  # each rank's RNG and generator states, for a resume on every rank
    aug0, aug1 = (r["generators"]["SBCLModule.augment"] for r in ranks)
    assert not torch.allclose(torch.as_tensor(aug0), torch.as_tensor(aug1))  # each rank its own stream
    assert os.environ.get("LOCAL_RANK") is None  # the test process itself was never a rank


@pytest.mark.slow
def test_a_killed_ddp_run_resumes_on_every_rank_exactly(tmp_path: Path) -> None:
    """Killed (both ranks) after its first checkpoint, then re-run: every rank takes back its own RNG and
    augmentation states from last.ckpt, so metrics and curves equal the uninterrupted run's."""
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import ROOT

    args = [sys.executable, "run.py", "method=sbcl", "scale=smoke", "hardware=ddp", "logger=none"]
    args += ["hardware.accelerator=cpu", "hardware.devices=2", "hardware.precision=32-true"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    subprocess.run([*args, f"hydra.run.dir={straight}"], cwd=ROOT, env=env, check=True, capture_output=True)
    victim = subprocess.Popen(
        [*args, f"hydra.run.dir={resumed}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: rank 0 and the rank it launched
    )
    try:
        deadline = time.monotonic() + 120
        while not (resumed / "checkpoints" / "last.ckpt").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
    finally:
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait()
    ckpt = torch.load(resumed / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["epoch"] < 4 and len(ckpt["callbacks"]["reprolab_resume"]["ranks"]) == 2
    again = subprocess.run([*args, f"hydra.run.dir={resumed}"], cwd=ROOT, env=env, capture_output=True)
    assert again.returncode == 0, again.stderr.decode()[-3000:]
    a, b = (json.loads((d / "results.json").read_text()) for d in (straight, resumed))
    assert [x["status"] for x in b["attempts"]] == ["killed", "completed"]
    assert a["metrics"].keys() == b["metrics"].keys()
    for key, value in a["metrics"].items():
        assert b["metrics"][key] == pytest.approx(value, rel=1e-6, abs=1e-7), key
    got, want = b["curves"]["train_loss"], a["curves"]["train_loss"]
    assert [s for s, _ in got] == [s for s, _ in want] == [1, 2, 3, 4]
    assert [v for _, v in got] == pytest.approx([v for _, v in want], rel=1e-6)
