"""SCooL across ranks (issue 16): `hardware=ddp` on 2 CPU processes (gloo), each simulating 20 of 40
devices, gives the run of one process simulating all 40: the same accuracies and curves, one results
record and one checkpoint, written by rank 0."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.loop_resume import run_in_process

# The official per-device encoders are the sharded case (each rank holds its devices' encoders and their
# AdamW states, averaged over all 40 after every round); conflict has groups, so in_group_weight counts.
ARGS = [
    "method=scool",
    "scale=smoke",
    "data=digits",
    "logger=none",
    "method.partition=conflict",
    "method.n_devices=40",
    "method.algo=scool_attention",
    "method.att_encoder=official",
]


@pytest.mark.slow
def test_two_gloo_ranks_of_20_devices_match_one_process_of_40(cli, compose, tmp_path: Path) -> None:
    want, ctx = run_in_process(compose, ARGS, tmp_path / "one")
    run_dir = tmp_path / "two"
    out = cli(
        *ARGS,
        "hardware=ddp",
        "hardware.accelerator=cpu",
        "hardware.devices=2",
        "hardware.precision=32-true",
        f"hydra.run.dir={run_dir}",
        timeout=400,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    log = out.stdout + out.stderr
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in log
    assert "simulates devices 20..39" in log and "simulates devices 0..19" in log
    record = json.loads((run_dir / "results.json").read_text())
    assert record["status"] == "completed" and len(record["attempts"]) == 1
    got = record["metrics"]
    assert got.keys() == want.keys()
    # The same arithmetic on each device, batched 20 instead of 40 at a time, and sums over ranks in
    # another order: float32 rounding only (1e-4 is 1/4 of one test image of one device in 40).
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-4), key
    for name, curve in ctx.curves.items():
        steps, values = zip(*record["curves"][name], strict=True)
        assert list(steps) == [s for s, _ in curve]
        assert list(values) == pytest.approx([v for _, v in curve], abs=1e-4), name
    # rank 0 wrote the whole run's state: all 40 devices' models and encoders
    state = torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=False)["state"]
    assert state["round"] == 2  # after rounds 1..3 of 4
    assert {v.shape[0] for v in state["params"].values()} == {40}
    assert {v.shape[0] for v in state["encoder"].values()} == {40}
    assert {s["exp_avg"].shape[0] for s in state["enc_opt"]["state"].values()} == {40}
    assert not list(run_dir.glob("**/results.json.*"))
    assert (run_dir / "graph.png").stat().st_size > 1000
