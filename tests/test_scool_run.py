"""SCooL runs: a run stopped after a round resumes from its checkpoint to the uninterrupted result; a
run writes its metrics, curves and the cooperation-graph plot."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.loop_resume import Stop, run_in_process

SMOKE = ["method=scool", "scale=smoke", "data=digits", "logger=none", "method.partition=conflict"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "algo", ["scool_sbm", "scool_attention", "scool_attention method.att_encoder=official"]
)
def test_stopped_run_resumes_to_the_same_result(compose, tmp_path: Path, algo: str) -> None:
    # official: per-device encoders and their AdamW states come back from the checkpoint
    args = [*SMOKE, *f"method.algo={algo}".split()]
    straight, _ = run_in_process(compose, args, tmp_path / "a")
    with pytest.raises(Stop):
        run_in_process(compose, args, tmp_path / "b", stop_at=4)  # after rounds 1-3 were checkpointed
    assert (tmp_path / "b" / "checkpoint.pt").exists()
    resumed, ctx = run_in_process(compose, args, tmp_path / "b")
    assert resumed == straight
    assert [s for s, _ in ctx.curves["accuracy"]] == [2, 4]
    assert (tmp_path / "b" / "graph.png").stat().st_size > 1000


@pytest.mark.slow
def test_fedavg_run_metrics(compose, tmp_path: Path) -> None:
    args = [*SMOKE, "method.algo=fedavg", "method.fedavg_fraction=1.0"]  # every device averaged
    metrics, ctx = run_in_process(compose, args, tmp_path)
    assert 0 <= metrics["accuracy_min"] <= metrics["accuracy"] <= 1  # fractions (issue 18 item 12)
    # the official masked accuracy counts every prediction the unmasked one counts, and more
    assert 0 <= metrics["accuracy_unmasked"] <= metrics["accuracy"]
    # FedAvg mixes uniformly: the in-group share is the group's share of the other devices (4 of 9)
    assert metrics["in_group_weight"] == pytest.approx(4 / 9, abs=1e-5)
    assert [s for s, _ in ctx.curves["accuracy"]] == [2, 4]
    assert (tmp_path / "graph.png").exists() and (tmp_path / "checkpoint.pt").exists()
