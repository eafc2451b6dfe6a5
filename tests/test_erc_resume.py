"""Incremental replay checkpoints (issue 15 item 1): each save writes only the transitions added since the
last one, and a run killed after incremental checkpoints resumes to the uninterrupted run's result."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from runners.off_policy.replay import FIELDS, ReplayBuffer
from tests.loop_resume import Stop, run_in_process


def filled(capacity: int, n: int, seed: int = 0, start: int = 0) -> ReplayBuffer:
    buf = ReplayBuffer(capacity, obs_dim=3, act_dim=2, rng=np.random.default_rng(seed))
    add(buf, start, n)
    return buf


def add(buf: ReplayBuffer, start: int, stop: int) -> None:
    for i in range(start, stop):
        buf.add(
            np.full(3, i, np.float32),
            np.full(2, -i, np.float32),
            float(i),
            np.full(3, i + 1, np.float32),
            i % 7 == 0,
        )


def chunk_rows(directory: Path) -> dict[str, int]:
    out = {}
    for path in sorted(directory.glob("chunk_*.npz")):
        with np.load(path) as chunk:
            out[path.name] = len(chunk["rew"])
    return out


def assert_same(a: ReplayBuffer, b: ReplayBuffer) -> None:
    assert (a.size, a.ptr, a.added) == (b.size, b.ptr, b.added)
    for key in FIELDS:
        np.testing.assert_array_equal(getattr(a, key)[: a.size], getattr(b, key)[: b.size])
    for x, y in zip(a.sample(32, torch.device("cpu")), b.sample(32, torch.device("cpu")), strict=True):
        torch.testing.assert_close(x, y)  # the sampling stream continues identically


def test_each_save_writes_only_the_new_transitions(tmp_path: Path) -> None:
    buf = filled(100, 30)
    first = buf.save(tmp_path)
    add(buf, 30, 40)
    second = buf.save(tmp_path)
    assert buf.save(tmp_path)["chunks"] == second["chunks"]  # nothing new: nothing written
    assert chunk_rows(tmp_path) == {
        "chunk_000000000000_000000000030.npz": 30,
        "chunk_000000000030_000000000040.npz": 10,
    }
    assert first["chunks"] == ["chunk_000000000000_000000000030.npz"] and len(second["chunks"]) == 2
    assert "obs" not in second  # the manifest holds names and counters, no transitions

    clone = ReplayBuffer(100, obs_dim=3, act_dim=2, rng=np.random.default_rng(123))
    clone.load(tmp_path, second)
    assert_same(buf, clone)


def test_load_deletes_chunks_of_a_killed_attempt_and_resumes_saving(tmp_path: Path) -> None:
    buf = filled(100, 20)
    manifest = buf.save(tmp_path)
    add(buf, 20, 25)
    buf.save(tmp_path)  # written, but the checkpoint naming it never was (killed)
    clone = ReplayBuffer(100, obs_dim=3, act_dim=2, rng=np.random.default_rng(1))
    clone.load(tmp_path, manifest)
    assert list(chunk_rows(tmp_path)) == ["chunk_000000000000_000000000020.npz"]
    add(clone, 20, 28)
    again = ReplayBuffer(100, obs_dim=3, act_dim=2, rng=np.random.default_rng(2))
    again.load(tmp_path, clone.save(tmp_path))
    assert_same(clone, again)
    assert chunk_rows(tmp_path)["chunk_000000000020_000000000028.npz"] == 8


def test_wrapped_ring_restores_and_drops_overwritten_chunks_one_save_later(tmp_path: Path) -> None:
    buf = ReplayBuffer(8, obs_dim=3, act_dim=2, rng=np.random.default_rng(0))
    manifests = []
    for stop in range(5, 26, 5):  # saves after 5, 10, ..., 25 adds into a ring of 8
        add(buf, stop - 5, stop)
        manifests.append(buf.save(tmp_path))
    # After 25 adds the live ids are 17..24: chunks [15, 20) and [20, 25) remain; [10, 15) left the
    # manifest at this save and its file stays until the next one (the checkpoint on disk still names it).
    assert manifests[-1]["chunks"] == [
        "chunk_000000000015_000000000020.npz",
        "chunk_000000000020_000000000025.npz",
    ]
    assert "chunk_000000000010_000000000015.npz" in chunk_rows(tmp_path)
    clone = ReplayBuffer(8, obs_dim=3, act_dim=2, rng=np.random.default_rng(5))
    clone.load(tmp_path, manifests[-1])
    assert_same(buf, clone)
    assert sorted(clone.obs[:, 0].tolist()) == list(map(float, range(17, 25)))


def test_a_fresh_run_clears_chunks_left_by_an_earlier_one(tmp_path: Path) -> None:
    filled(100, 12).save(tmp_path)
    buf = filled(100, 6, seed=3)
    buf.save(tmp_path)
    assert chunk_rows(tmp_path) == {"chunk_000000000000_000000000006.npz": 6}


# Episodes of 1000 / 8 steps: checkpoints at 125 and 250 (two incremental chunks); killed at step 375.
RUN = [
    *("scale=smoke", "logger=none", "env.action_repeat=8", "checkpoint_every=125"),
    *("method.total_steps=375", "method.learning_starts=100", "method.eval_every=125"),
    *("method.buffer_size=375", "model.hidden_dims=[32,32]"),
]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["erc", "td3"])
def test_killed_after_incremental_checkpoints_resumes_exactly(compose, tmp_path: Path, method: str) -> None:
    """TD3 draws its exploration and smoothing noise from torch's global generator: restored too."""
    run = [f"method={method}", *RUN]
    straight, first = run_in_process(compose, run, tmp_path / "a")
    with pytest.raises(Stop):
        run_in_process(compose, run, tmp_path / "b", stop_at=375)
    payload = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)
    manifest = payload["state"]["buffer"]
    assert payload["state"]["step"] == 250 and "obs" not in manifest
    replay = tmp_path / "b" / "checkpoints" / "replay"
    assert chunk_rows(replay) == {
        "chunk_000000000000_000000000125.npz": 125,
        "chunk_000000000125_000000000250.npz": 125,
    }

    resumed, ctx = run_in_process(compose, run, tmp_path / "b")
    assert resumed == straight
    assert ctx.curves == first.curves and [s for s, _ in ctx.curves["eval_return"]] == [125, 250, 375]
