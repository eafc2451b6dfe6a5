"""results.json: secrets scrubbed by key and by value and nothing else (issue 18.5), every attempt's times
kept, killed ones included (18.13), the error's message beside its traceback (18.14)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from runners.results import (
    REMOVED,
    ResultsSink,
    attempt_count,
    earlier_attempts,
    error_message,
    is_secret_key,
    scrub_overrides,
    scrub_secrets,
    scrubbed_config,
)

ROOT = Path(__file__).resolve().parent.parent
METHODS = sorted(p.stem for p in (ROOT / "conf" / "method").glob("*.yaml"))
SECRET = "sk-test-0123456789abcdef"


def _all_keys(obj: object) -> set[str]:
    if isinstance(obj, dict):
        return {str(k) for k in obj} | {k for v in obj.values() for k in _all_keys(v)}
    if isinstance(obj, list):
        return {k for v in obj for k in _all_keys(v)}
    return set()


# ---------------------------------------------------------------- 18.5: what is a secret


@pytest.mark.parametrize("method", METHODS)
def test_every_methods_stored_config_is_the_config(compose, method: str, monkeypatch) -> None:
    """Nothing of a method's config is removed: the stored config re-composes the same run."""
    for name in list(os.environ):
        if is_secret_key(name) or name.endswith("_API_KEY"):
            monkeypatch.delenv(name)
    cfg = compose([f"method={method}", "scale=smoke"])
    resolved = OmegaConf.to_container(cfg, resolve=True)
    stored = scrubbed_config(cfg)
    assert stored == resolved
    assert REMOVED not in json.dumps(stored)
    # The stored config composes back into the very same config.
    assert OmegaConf.to_container(OmegaConf.merge(cfg, OmegaConf.create(stored)), resolve=True) == resolved


def test_token_counts_are_settings_and_tokens_are_secrets() -> None:
    kept = ["max_tokens", "max_new_tokens", "n_soft_tokens", "max_instruction_tokens", "black_box_max_tokens"]
    kept += ["api_key_env", "pad_token", "cache_key", "tokenizer", "keys", "secret_sauce_steps"]
    scrubbed = ["api_key", "API-KEY", "token", "hf_token", "HF_TOKEN", "openai_api_key", "password", "key"]
    scrubbed += ["secret", "wandb_api_key", "client_secret", "access_token"]
    assert [k for k in kept if is_secret_key(k)] == []
    assert [k for k in scrubbed if not is_secret_key(k)] == []
    record = scrub_secrets({"method": {"max_new_tokens": 64, "grader": {"api_key": "x", "max_tokens": 8}}})
    assert record == {"method": {"max_new_tokens": 64, "grader": {"api_key": REMOVED, "max_tokens": 8}}}


def test_a_secret_read_from_a_named_environment_variable_is_scrubbed(compose, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("MY_GRADER_KEY", SECRET)
    args = [
        "method=alpagasus",
        "scale=smoke",
        "method.grader.api_key_env=MY_GRADER_KEY",
        # A user who puts the key into a URL through an interpolation: the resolved value holds it.
        "method.grader.base_url='http://127.0.0.1:9/v1?key=${oc.env:MY_GRADER_KEY}'",
    ]
    cfg = compose(args)
    assert SECRET in OmegaConf.to_container(cfg, resolve=True)["method"]["grader"]["base_url"]
    stored = scrubbed_config(cfg)
    assert SECRET not in json.dumps(stored)
    assert stored["method"]["grader"]["base_url"] == REMOVED
    assert stored["method"]["grader"]["api_key_env"] == "MY_GRADER_KEY"  # the name is a setting, kept
    # The same value given literally on the command line (and a key= override) leaves no trace either.
    overrides = [f"method.grader.base_url=http://h/?k={SECRET}", "method.grader.api_key=abc", "seed=0"]
    scrubbed = scrub_overrides(overrides, {SECRET})
    assert scrubbed == [f"method.grader.base_url={REMOVED}", f"method.grader.api_key={REMOVED}", "seed=0"]
    sink = ResultsSink(tmp_path, cfg, [*args, f"logger.tags=[{SECRET}]"])
    sink.write("running")
    sink.write("completed", {"x": 1.0})
    text = (tmp_path / "results.json").read_text()
    assert SECRET not in text and '"max_tokens": ' in text


@pytest.mark.slow  # imports lightning
def test_wandb_gets_the_same_scrubbed_config(compose, monkeypatch, tmp_path) -> None:
    """runners.loggers hands W&B exactly what results.json stores (the logger itself is faked)."""
    import lightning.pytorch.loggers as pl_loggers

    from runners.loggers import build_loggers

    seen: dict = {}

    class FakeWandb:
        def __init__(self, **kwargs: object) -> None:
            seen.update(kwargs)

    monkeypatch.setattr(pl_loggers, "WandbLogger", FakeWandb)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    cfg = compose(["method=instructzero", "scale=smoke", "logger=wandb", f"logger.tags=[{SECRET}]"])
    build_loggers(cfg, tmp_path, "run")
    assert seen["config"] == scrubbed_config(cfg)
    assert seen["config"]["method"]["black_box_max_tokens"] == cfg.method.black_box_max_tokens
    assert SECRET not in json.dumps(seen["config"])


# ---------------------------------------------------------------- 18.13: attempts and their times

_KILLED_ATTEMPT = """
import sys, time
from omegaconf import OmegaConf
from runners.results import ResultsSink
ResultsSink.heartbeat_s = 0.2
cfg = OmegaConf.create({"method": {"name": "m"}, "scale": {"name": "smoke"}, "seed": 0})
ResultsSink(__import__("pathlib").Path(sys.argv[1]), cfg).write("running")
time.sleep(600)
"""


def _cfg():
    return OmegaConf.create({"method": {"name": "m"}, "scale": {"name": "smoke"}, "seed": 0})


@pytest.mark.slow
def test_a_killed_attempt_still_counts(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    victim = subprocess.Popen(
        [sys.executable, "-c", _KILLED_ATTEMPT, str(tmp_path)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    deadline = time.monotonic() + 60
    seen = 0.0
    while seen < 1.0 and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
        with contextlib.suppress(OSError, ValueError, KeyError):  # not written yet, or mid-replace
            seen = float(json.loads(path.read_text())["wall_seconds"])
    victim.send_signal(signal.SIGKILL)  # no final write
    victim.wait()
    killed = json.loads(path.read_text())
    assert killed["status"] == "running" and killed["attempts"][0]["wall_seconds"] >= 1.0

    sink = ResultsSink(tmp_path, _cfg())
    sink.write("running")
    time.sleep(0.1)
    sink.write("completed", {"x": 1.0})
    record = json.loads(path.read_text())
    first, second = record["attempts"]
    assert (first["status"], second["status"]) == ("killed", "completed")
    assert first["wall_seconds"] == pytest.approx(killed["attempts"][0]["wall_seconds"])
    assert first["ended_at"] == killed["updated_at"] and first["started_at"] == record["started_at"]
    assert second["wall_seconds"] >= 0.1 and second["ended_at"] == record["finished_at"]
    assert record["wall_seconds"] == pytest.approx(first["wall_seconds"] + second["wall_seconds"], abs=2e-3)
    assert attempt_count(record) == 2


def test_heartbeat_refreshes_a_running_record_and_stops_at_the_end(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(ResultsSink, "heartbeat_s", 0.05)
    sink = ResultsSink(tmp_path, _cfg())
    sink.write("running")
    path = tmp_path / "results.json"
    deadline = time.monotonic() + 10
    while json.loads(path.read_text())["wall_seconds"] < 0.2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert json.loads(path.read_text())["attempts"][-1]["status"] == "running"
    sink.write("failed", error="Traceback ...", error_message="ValueError: bad")
    final = path.read_text()
    time.sleep(0.2)
    assert path.read_text() == final  # no heartbeat after the final write
    assert json.loads(final)["attempts"][-1]["status"] == "failed"


def test_records_from_before_per_attempt_times_still_read() -> None:
    old = {"status": "completed", "attempts": 2, "wall_seconds": 12.5, "started_at": "t0"}
    (merged,) = earlier_attempts(old)
    assert merged["wall_seconds"] == pytest.approx(12.5) and merged["count"] == 2
    assert attempt_count(old) == 2 and attempt_count({"attempts": [merged, {"status": "completed"}]}) == 3
    assert earlier_attempts({}) == []


# ---------------------------------------------------------------- 18.14: the error's message


def fails(task: str) -> None:
    raise ValueError(f"env.task={task!r} is not a DMControl task; valid tasks: cartpole_swingup, walker_walk")


def test_error_message_is_the_wrapped_errors_message_not_the_last_traceback_line() -> None:
    from hydra.utils import instantiate

    with pytest.raises(Exception) as info:
        instantiate({"env": {"_target_": "tests.test_results_record.fails", "task": "cartpole_fly"}})
    trace_last = str(info.value).strip().splitlines()[-1]
    assert trace_last == "full_key: env"  # what the report used to show
    assert error_message(info.value) == (
        "ValueError: env.task='cartpole_fly' is not a DMControl task; "
        "valid tasks: cartpole_swingup, walker_walk"
    )
    assert error_message(KeyboardInterrupt()) == "KeyboardInterrupt"
