"""Rehearsal of AlpaGasus's paper configuration (``scale=paper``, conf/budget/alpagasus/paper.yaml)
offline, as DESIGN.md "Paper scale, and its rehearsal" says: the filtered and full arms of the
``alpagasus_filter`` sweep (one seed) through run.py, the both-order judge over it, then the report, with
only sizes and sources overridden:

- sources: a tiny random Llama (save_pretrained) as ``model.name``, Alpaca-format JSON as ``method.data``,
  the four test sets in their official JSONL schemas as ``method.test_sets.*``, the loopback
  OpenAI-compatible server (data.llm.serve, scripted: a tiny model cannot grade or judge) as the grader
  (``method.grader.base_url``; the model name stays the paper's gpt-3.5-turbo-0301) and the judge
  (``method.judge.base_url``; gpt-4);
- sizes: records, batch, epochs, answer tokens;
- hardware: ``hardware.accelerator=cpu`` (no GPU here); the paper's bf16-mixed precision stays.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import pytest

from data.llm.client import ChatRequest
from data.llm.serve import make_server, serve_in_thread
from tests.paper.cli import report
from tests.paper.test_ifd_paper import ROOT, env_for, sources

EXPERIMENT = "conf/experiment/alpagasus_filter.yaml"


class ScriptedGraderAndJudge:
    """Grades (the prompt asks for a 0-5 score): 5 or 3.5 by a hash of the record; judge replies: two
    scores, a deterministic function of the prompt. Records which model each request named."""

    identity = "scripted"

    def __init__(self) -> None:
        self.grades: list[str] = []
        self.judged: list[str] = []
        self.lock = threading.Lock()

    def complete(self, request: ChatRequest) -> str:
        text = request.messages[-1]["content"]
        h = zlib.crc32(text.encode())
        with self.lock:
            if "0 to 5" in text:
                self.grades.append(text)
                return ("5" if h % 3 == 0 else "3.5") + "\nThe response is scripted."
            self.judged.append(text)
        return f"{3 + h % 5} {3 + (h // 7) % 5}\nA scripted review."


@pytest.mark.slow
def test_rehearsal_of_the_paper_configuration_filtered_vs_full(tmp_path: Path) -> None:
    llm = ScriptedGraderAndJudge()
    server = make_server(llm)
    serve_in_thread(server)
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    sweep = tmp_path / "sweep"
    sizes = [
        "seed=0",
        "method.n_train=60",
        "method.tuning.batch_size=4",
        "method.tuning.micro_batch_size=4",
        "method.tuning.epochs=1",
        "method.max_new_tokens=8",
    ]
    args = ["-m", "experiment=alpagasus_filter", "scale=paper", "method.arm=filtered,full", *sizes]
    args += [*sources(tmp_path), f"method.grader.base_url={url}", f"method.judge.base_url={url}"]
    args += ["hardware.name=cpu", "hardware.accelerator=cpu", "logger=none", f"hydra.sweep.dir={sweep}"]
    env = env_for(tmp_path)
    try:
        run = subprocess.run(
            [sys.executable, "run.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
        )
        assert run.returncode == 0, run.stderr[-3000:]
        records = {}
        for path in sweep.rglob("results.json"):
            record = json.loads(path.read_text())
            records[record["config"]["method"]["arm"]] = (path.parent, record)
        assert sorted(records) == ["filtered", "full"]
        assert len(llm.grades) == 60  # every record graded once (the first alone: the probe)
        run_dir, filtered = records["filtered"]
        grades = [json.loads(x) for x in (run_dir / "grades.jsonl").read_text().splitlines()]
        kept = sum(g["score"] is not None and g["score"] >= 4.5 for g in grades)
        assert 0 < kept < 60 and filtered["metrics"]["n_selected"] == kept
        for run_dir, record in records.values():
            assert record["status"] == "completed" and record["scale"] == "paper"
            m = record["config"]["method"]
            assert (m["grader"]["model"], m["grader"]["max_tokens"], m["threshold"]) == (
                "gpt-3.5-turbo-0301",
                256,
                4.5,
            )
            assert (m["tuning"]["mode"], m["tuning"]["lr"], m["judge"]["model"]) == ("full", 2e-5, "gpt-4")
            predictions = [json.loads(x) for x in (run_dir / "predictions.jsonl").read_text().splitlines()]
            assert len(predictions) == 8 and {p["family"] for p in predictions} == {
                "vicuna",
                "koala",
                "wizardlm",
                "sinstruct",
            }

        judged = subprocess.run(
            [sys.executable, "-m", "data.instructions.judge_runs", str(sweep), "--reference", "full"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert judged.returncode == 0, judged.stderr[-3000:]
        assert len(llm.judged) == 2 * 8
        metrics = json.loads((records["filtered"][0] / "results.json").read_text())["metrics"]
        for name in ("vicuna", "koala", "wizardlm", "sinstruct"):
            counts = [metrics[f"judge_{name}_{k}"] for k in ("win", "tie", "lose")]
            assert sum(counts) == 2
    finally:
        server.shutdown()

    text = report(sweep, EXPERIMENT, env)
    assert "scale: paper" in text and "2/2 runs completed" in text
    assert "judge_vicuna_winning_score" in text and "paper filtered" in text and "1.21" in text
