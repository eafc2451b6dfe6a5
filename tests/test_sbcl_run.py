"""SBCL / SupCon / CE as composed by run.py and run by its runner in-process (a smoke run exercises
warm-up, re-clustering, stage 2 and the head / medium / tail report)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest


def test_method_files_pick_the_arm_and_bad_values_are_named(compose) -> None:
    for name, loss, classifier in [
        ("sbcl", "sbcl", "balanced"),
        ("supcon", "supcon", "balanced"),
        ("ce", "ce", "joint"),
    ]:
        cfg = compose([f"method={name}", "scale=smoke", "data=digits_lt"])
        assert (cfg.method.name, cfg.method.loss, cfg.method.classifier) == (name, loss, classifier)
        assert cfg.model.name == "small_cnn" and cfg.method.epochs == 4
    paper = compose(["experiment=sbcl_lt", "scale=paper", "method=sbcl"])
    assert (paper.method.lr, paper.method.batch_size, paper.method.probe.loss) == (0.5, 1024, "ldam_drw")
    from runners.validate import ConfigError, validate_overrides

    with pytest.raises(
        ConfigError, match=r"method\.loss='triplet' is not valid; choose one of: ce, supcon, sbcl"
    ):
        validate_overrides(["method=sbcl", "method.loss=triplet"])


@pytest.mark.slow
def test_sbcl_smoke_run_reports_groups_and_sane_subclasses(compose, tmp_path: Path) -> None:
    from runners.execute import execute

    execute(compose(["method=sbcl", "scale=smoke", "data=digits_lt", "logger=none"]), out_dir=tmp_path)
    record = json.loads((tmp_path / "results.json").read_text())
    m = record["metrics"]
    assert record["status"] == "completed" and record["data"] == "digits"
    for key in ("acc", "balanced_acc", "head_acc", "medium_acc", "tail_acc"):
        assert 0.0 <= m[key] <= 1.0
    # mechanism: counts 122…12 with δ = 10 give M = 12 and K = [10, 7, 6, 4, 3, 2, 2, 1, 1, 1]
    assert m["sub/num_subclasses"] == 37 and m["sub/ids_in_range"] == pytest.approx(1.0)
    assert 0.5 < m["sub/size_over_M_mean"] < 2.0
    assert math.isfinite(m["loss/class_term"]) and m["loss/class_term"] > 0
    assert len(record["curves"]["train_loss"]) == 4
