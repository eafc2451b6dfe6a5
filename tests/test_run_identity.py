"""Run-dir identity and lock: work made with other settings is refused, not silently reused (issue 18
items 1 and 10): loop checkpoints, pipeline stages (only the keys a stage reads), completed records, and
a second run into a dir another live process holds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from runners.context import RunContext
from runners.contract import PipelineMethod, Stage
from runners.identity import ResumeRefused, config_identity, differences
from runners.pipeline_runner import run_pipeline
from runners.run_lock import RunDirBusy, RunDirLock
from tests.conftest import ROOT

BASE = ["method=erc", "scale=smoke", "logger=none"]


def test_identity_ignores_keys_that_cannot_change_a_result(compose) -> None:
    base = config_identity(compose(BASE))
    same = compose([*BASE, "hardware.num_threads=3", "checkpoint_every=7", "rerun=true", "logger=csv"])
    assert config_identity(same) == base
    other = config_identity(compose([*BASE, "method.beta=0.01"]))
    assert other["hash"] != base["hash"]
    assert differences(base, other) == [("method.beta", 0.005, 0.01)]
    # a stage's identity covers only what it reads
    reads = ("seed", "method.gamma")
    assert config_identity(compose([*BASE, "method.beta=0.01"]), reads) == config_identity(
        compose(BASE), reads
    )


def test_loop_checkpoint_from_other_settings_is_refused(compose, tmp_path: Path) -> None:
    RunContext(cfg=compose(BASE), out_dir=tmp_path).checkpoint.save({"step": 3})
    assert RunContext(cfg=compose(BASE), out_dir=tmp_path).checkpoint.load() == {"step": 3}
    other = RunContext(cfg=compose([*BASE, "method.beta=0.01", "seed=4"]), out_dir=tmp_path)
    with pytest.raises(ResumeRefused) as err:
        other.checkpoint.load()
    message = str(err.value)
    assert "checkpoint.pt" in message and "method.beta: 0.005 → 0.01" in message and "seed: 0 → 4" in message
    assert "rerun=true" in message and "hydra.run.dir" in message


def test_checkpoint_without_identity_is_refused(compose, tmp_path: Path) -> None:
    import torch

    torch.save({"step": 3}, tmp_path / "checkpoint.pt")  # a method's bare dict, as saved before
    with pytest.raises(ResumeRefused, match="no config identity"):
        RunContext(cfg=compose(BASE), out_dir=tmp_path).checkpoint.load()


def test_fit_checkpoint_from_other_settings_is_refused(compose, tmp_path: Path) -> None:
    from runners.fit_runner import run_fit
    from tests.test_runner_contract import LineMethod

    run_fit(LineMethod(), RunContext(cfg=compose(BASE), out_dir=tmp_path))
    assert (tmp_path / "checkpoints" / "last.ckpt").exists()
    with pytest.raises(ResumeRefused, match=r"(?s)last\.ckpt.*seed: 0 → 1"):
        run_fit(LineMethod(), RunContext(cfg=compose([*BASE, "seed=1"]), out_dir=tmp_path))


class ReadingPipeline(PipelineMethod):
    """Two stages: ``first`` reads method.gamma, ``second`` reads method.beta."""

    def __init__(self, fail_second: bool = False) -> None:
        self.calls: list[str] = []
        self.fail_second = fail_second

    def stages(self, ctx: RunContext) -> list[Stage]:
        def first(ctx: RunContext) -> dict[str, Any]:
            self.calls.append("first")
            return {"gamma": float(ctx.cfg.method.gamma)}

        def second(ctx: RunContext) -> dict[str, Any]:
            self.calls.append("second")
            if self.fail_second:
                raise RuntimeError("killed")
            return {"beta": float(ctx.cfg.method.beta)}

        return [
            Stage("first", first, reads=("method.gamma",)),
            Stage("second", second, reads=("method.beta",)),
        ]


def test_pipeline_stage_identity_covers_only_what_it_reads(compose, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        run_pipeline(ReadingPipeline(fail_second=True), RunContext(cfg=compose(BASE), out_dir=tmp_path))
    # a key only the unfinished later stage reads: the finished stage is kept
    later = ReadingPipeline()
    metrics = run_pipeline(later, RunContext(cfg=compose([*BASE, "method.beta=0.02"]), out_dir=tmp_path))
    assert later.calls == ["second"] and metrics == {"beta": 0.02}
    # a key the finished first stage read: refused before anything runs
    changed = ReadingPipeline()
    with pytest.raises(ResumeRefused, match=r"(?s)stages/first\.json.*method\.gamma: 0\.99 → 0\.9"):
        run_pipeline(changed, RunContext(cfg=compose([*BASE, "method.gamma=0.9"]), out_dir=tmp_path))
    assert changed.calls == []


def test_completed_record_of_other_settings_is_refused(compose, tmp_path: Path) -> None:
    from runners.execute import execute

    cfg = compose(BASE)
    record = {"status": "completed", "config_identity": config_identity(cfg), "metrics": {}}
    (tmp_path / "results.json").write_text(json.dumps(record))
    assert execute(cfg, out_dir=tmp_path) is None  # same settings: already completed, skipped
    with pytest.raises(ResumeRefused, match=r"method\.utd_ratio: 1 → 5"):
        execute(compose([*BASE, "method.utd_ratio=5"]), out_dir=tmp_path)


def test_second_run_into_a_locked_dir_is_refused_with_the_holders_pid(compose, tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from runners.run_lock import RunDirLock; "
            f"RunDirLock({str(tmp_path)!r}).acquire(); print('locked', flush=True); time.sleep(120)",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunDirBusy, match=rf"PID {holder.pid}\b.*hydra\.run\.dir"):
            RunDirLock(tmp_path).acquire()
        from runners.execute import execute

        with pytest.raises(RunDirBusy, match=f"PID {holder.pid}"):
            execute(compose(BASE), out_dir=tmp_path)
        assert not (tmp_path / "results.json").exists()  # the refused run wrote nothing
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    with RunDirLock(tmp_path):  # the OS released the dead holder's lock
        assert (tmp_path / "run.lock").read_text().strip() == str(os.getpid())
    RunDirLock(tmp_path).acquire().release()  # and the lock is free again after `with`


@pytest.mark.slow
def test_cli_refusal_exits_2_without_a_traceback(compose, cli, tmp_path: Path) -> None:
    record = {"status": "completed", "config_identity": config_identity(compose(BASE)), "metrics": {}}
    (tmp_path / "results.json").write_text(json.dumps(record))
    t0 = time.monotonic()
    out = cli(*BASE, "method.beta=0.01", f"hydra.run.dir={tmp_path}")
    assert out.returncode == 2, out.stderr[-3000:]
    assert "Traceback" not in out.stderr and "method.beta: 0.005 → 0.01" in out.stderr
    assert "rerun=true" in out.stderr and time.monotonic() - t0 < 60


class Killed(Exception):
    pass


def _kill(*_: Any, **__: Any) -> dict[str, Any]:
    raise Killed


@pytest.mark.slow
def test_ifd_arm_change_after_select_is_refused(compose, tmp_path: Path, monkeypatch) -> None:
    """The issue's scenario: ifd_top killed once stages/select.json exists, rerun with arm=random in the
    same dir must not reuse ifd_top's selection."""
    from methods.ifd.method import IFD
    from runners.execute import execute

    args = ["method=ifd", "scale=smoke", "logger=none"]
    monkeypatch.setattr(IFD, "stage_tune", _kill)  # dies as a kill after select would
    with pytest.raises(Killed):
        execute(compose([*args, "method.arm=ifd_top"]), out_dir=tmp_path)
    selection = (tmp_path / "selection.json").read_text()
    assert (tmp_path / "stages" / "select.json").exists()
    with pytest.raises(ResumeRefused, match=r'(?s)stages/select\.json.*method\.arm: "ifd_top" → "random"'):
        execute(compose([*args, "method.arm=random"]), out_dir=tmp_path)
    assert (tmp_path / "selection.json").read_text() == selection
    # a key only tune reads keeps data, pre-experience, score and select
    monkeypatch.setattr(IFD, "stage_tune", lambda self, ctx: {"tuned_on": -1})
    monkeypatch.setattr(IFD, "stage_evaluate", lambda self, ctx: {})
    for stage in ("pre_experience", "score", "select"):
        monkeypatch.setattr(IFD, f"stage_{stage}", _kill)
    metrics = execute(compose([*args, "method.arm=ifd_top", "method.train_steps=3"]), out_dir=tmp_path)
    assert metrics["tuned_on"] == -1 and metrics["n_selected"] > 0


@pytest.mark.slow
def test_alpagasus_data_change_is_refused(compose, tmp_path: Path, monkeypatch) -> None:
    """A run killed after its data stage, rerun with another method.data, must not reuse the old data."""
    from methods.alpagasus.method import AlpaGasus
    from runners.execute import execute

    files = []
    for name, n in (("first.jsonl", 3), ("second.jsonl", 5)):
        rows = [{"id": f"r{i}", "instruction": f"say {i}", "input": "", "output": str(i)} for i in range(n)]
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
        files.append(tmp_path / name)
    run = tmp_path / "run"
    args = ["method=alpagasus", "scale=smoke", "logger=none"]
    monkeypatch.setattr(AlpaGasus, "stage_grade", _kill)
    with pytest.raises(Killed):
        execute(compose([*args, f"method.data={files[0]}"]), out_dir=run)
    assert len((run / "train.jsonl").read_text().splitlines()) == 3
    with pytest.raises(
        ResumeRefused, match=r"(?s)stages/data\.json.*method\.data: .*first\.jsonl.*second\.jsonl"
    ):
        execute(compose([*args, f"method.data={files[1]}"]), out_dir=run)
    with pytest.raises(Killed):  # rerun=true starts over with the corrected data
        execute(compose([*args, f"method.data={files[1]}", "rerun=true"]), out_dir=run)
    assert len((run / "train.jsonl").read_text().splitlines()) == 5
