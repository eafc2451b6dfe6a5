"""Diffusion-feature probe as composed by run.py and run by its runner in-process: DDPM trained and
cached, features cached, probe tested."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def test_config_choices_are_validated(compose) -> None:
    cfg = compose(["method=diffusion_cls", "scale=small"])
    assert cfg.model.name == "tiny_unet" and cfg.method.ddpm.steps == 1500
    from runners.validate import ConfigError, validate_overrides

    with pytest.raises(ConfigError, match=r"method\.features='vae' is not valid"):
        validate_overrides(["method=diffusion_cls", "method.features=vae"])
    with pytest.raises(ConfigError, match=r"expected down\.<i>, mid or up\.<i>"):
        validate_overrides(["method=diffusion_cls", "method.block=middle"])


@pytest.mark.slow
def test_smoke_probe_trains_ddpm_once_and_caches_features(compose, tmp_path: Path) -> None:
    from runners.execute import execute

    cache = tmp_path / "cache"
    args = [
        "method=diffusion_cls",
        "scale=smoke",
        "data=digits",
        "logger=none",
        f"method.ddpm.cache_dir={cache}",
        "method.shots=5",
        "method.block=up.1",
        "method.t=10",
    ]
    execute(compose(args), out_dir=tmp_path / "a")
    m = json.loads((tmp_path / "a" / "results.json").read_text())["metrics"]
    assert 0.0 <= m["test_acc"] <= 1.0 and m["feature_cache_misses"] == 2 and m["feature_cache_hits"] == 0
    assert len(list((cache / "ddpm").glob("*.pt"))) == 1
    # train + test features of the asked cell (up.1, t = 10) only
    assert len(list((cache / "features").glob("*.pt"))) == 2


@pytest.mark.slow
def test_cold_and_warm_cache_give_the_same_numbers(compose, tmp_path: Path, monkeypatch) -> None:
    """Issue 18.3: the cold path trains the DDPM (seeding torch's global RNG) and extracts features; the
    warm one loads both. The probe after them must not see the difference."""
    from runners.execute import execute

    monkeypatch.setenv("REPROLAB_CACHE", str(tmp_path / "cache"))
    args = ["method=diffusion_cls", "scale=smoke", "seed=0", "logger=none"]
    metrics = []
    for run in ("cold", "warm"):
        execute(compose(args), out_dir=tmp_path / run)
        metrics.append(json.loads((tmp_path / run / "results.json").read_text())["metrics"])
    cold, warm = metrics
    hits_misses = [(m["feature_cache_hits"], m["feature_cache_misses"]) for m in metrics]
    assert hits_misses == [(0, 2), (2, 0)]
    # The default cache_dir (null) puts everything under $REPROLAB_CACHE.
    assert len(list((tmp_path / "cache" / "diffusion_cls" / "ddpm").glob("*.pt"))) == 1
    drop = ("feature_cache_hits", "feature_cache_misses")
    same_code_twice = {k: v for k, v in cold.items() if k not in drop}  # one machine, same code: exact
    assert same_code_twice == {k: v for k, v in warm.items() if k not in drop}
