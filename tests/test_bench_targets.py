"""The shared PASS/MISS line of the benchmarks."""

from __future__ import annotations

import pytest

from bench.targets import Target


def test_verdicts_follow_the_direction() -> None:
    assert Target("a", 1.3, 1.3, "<=").passed is True
    assert Target("a", 1.31, 1.3, "<=").passed is False
    assert Target("a", 2.0, 2.0, ">=").passed is True
    assert Target("a", 1.99, 2.0, ">=").passed is False
    assert Target("a", None, 2.0).passed is None


def test_line_shows_value_bound_and_verdict() -> None:
    assert Target("speed-up", 2.5, 2.0, note="quick").line(10) == (
        "speed-up     2.500  (target >= 2)  PASS  [quick]"
    )
    assert Target("ratio", 0.9, 0.25, "<=").line(5).endswith("(target <= 0.25)  MISS")
    assert Target("x", None, 1.0).line(1).endswith("NO VALUE")


def test_bad_direction_is_refused() -> None:
    with pytest.raises(ValueError, match="direction"):
        Target("x", 1.0, 1.0, "<")
