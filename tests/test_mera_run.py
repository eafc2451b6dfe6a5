"""MerA through run.py: config validation (fast) and a smoke sweep of two rows (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runners.validate import ConfigError, validate_overrides


def test_bad_variant_names_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"method\.variant='nope'.*mera_same_track"):
        validate_overrides(["method=mera", "method.variant=nope"])


def test_shots_beyond_the_pool_are_refused(compose) -> None:
    cfg = compose(["method=mera", "scale=smoke"])
    assert cfg.model.name == "sentence-transformers/all-MiniLM-L6-v2" and cfg.method.shots == [2, 4]
    with pytest.raises(ConfigError, match="pool_per_class"):
        validate_overrides(["method=mera", "method.shots=[2,100]"])


@pytest.mark.slow
def test_smoke_sweep_merges_and_tunes(cli, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    proc = cli(
        "-m",
        "method=mera",
        "scale=smoke",
        "logger=none",
        "method.variant=mera_same_track,fusion",
        "method.alignment=activation",
        f"hydra.sweep.dir={sweep}",
        env={"REPROLAB_CACHE": str(tmp_path / "cache"), "WANDB_MODE": "disabled"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = {}
    for path in sweep.rglob("results.json"):
        r = json.loads(path.read_text())
        records[r["config"]["method"]["variant"]] = (path.parent, r)
    assert set(records) == {"mera_same_track", "fusion"}
    run_dir, mera = records["mera_same_track"]
    assert mera["status"] == "completed"
    accs = [v for k, v in mera["metrics"].items() if k.startswith(("acc_", "source_acc/"))]
    assert len(accs) == 2 + 3 and all(0 <= a <= 1 for a in accs)  # fractions (issue 18 item 12)
    assert mera["metrics"]["n_merged"] == 2  # the two entail sources of the three
    meta = json.loads((run_dir / "merged" / "adapter_config.json").read_text())
    assert meta["alignment"] == "activation" and meta["merged_from"] == ["entail__box", "entail__trip"]
    assert [s for s, _ in mera["curves"]["accuracy"]] == [2, 4]
    _, fusion = records["fusion"]
    # AdapterFusion trains Q/K/V per layer; MerA trains one adapter: far fewer parameters
    assert fusion["metrics"]["trainable_params"] > 10 * mera["metrics"]["trainable_params"]
    # the sources were trained once, into the cache, and shared by both runs
    assert len([p for p in (tmp_path / "cache" / "mera" / "sources").iterdir() if p.is_dir()]) == 3
