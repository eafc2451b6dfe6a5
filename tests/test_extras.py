"""A stage that needs an optional extra's package says which key asked and how to install it."""

from __future__ import annotations

import importlib.util

import pytest

from data.extras import require
from methods.h2o.method import check_tasks_available


def test_a_missing_package_names_the_key_and_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    require("lm_eval", "online", "method.leaderboard.tasks")  # installed here: nothing to say
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "lm_eval" else real(name, *a)
    )
    with pytest.raises(
        ValueError, match=r"method\.leaderboard\.tasks needs the lm_eval package.*\.\[online\]"
    ):
        require("lm_eval", "online", "method.leaderboard.tasks")
    with pytest.raises(ValueError, match=r"method\.evaluation=lm_eval needs the lm_eval package"):
        check_tasks_available(["local.yaml"])
