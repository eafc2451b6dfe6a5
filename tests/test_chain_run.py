"""CHAIN runs: a run stopped after a round resumes from its checkpoint to the uninterrupted result."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.loop_resume import Stop, run_in_process

SMOKE = ["method=chain", "scale=smoke", "data=digits", "logger=none"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "schedule, strategy", [("meta", "badge"), ("chain", "typiclust"), ("grid", "coreset")]
)
def test_stopped_run_resumes_to_the_same_result(
    compose, tmp_path: Path, schedule: str, strategy: str
) -> None:
    args = [*SMOKE, f"method.schedule={schedule}", f"method.strategy={strategy}"]
    straight, first = run_in_process(compose, args, tmp_path / "a")
    with pytest.raises(Stop):
        run_in_process(compose, args, tmp_path / "b", stop_at=2)  # rounds 0 and 1 were checkpointed
    resumed, ctx = run_in_process(compose, args, tmp_path / "b")
    assert resumed == straight
    assert ctx.curves == first.curves
    assert [s for s, _ in ctx.curves["accuracy"]] == [0, 1, 2]
    assert [v for _, v in ctx.curves["n_labelled"]] == [10, 15, 20]
    assert 0 < straight["aulc"] <= 1 and straight["n_labelled"] == 20
