"""Rehearsal of InstructZero's paper configuration (``scale=paper``, conf/budget/instructzero/paper.yaml)
offline, as DESIGN.md "Paper scale, and its rehearsal" says: one task (antonyms) and one seed of the
``instructzero_tasks`` paper sweep, its three arms (instructzero, random, ape), through run.py, then the
report, with only sizes and sources overridden:

- sources: a tiny random Llama (save_pretrained; its tokenizer has no chat template, as Vicuna's 2023
  releases) as ``model.name`` where lmsys/vicuna-13b-v1.3 goes; the task's official-format
  ``raw/{induce,execute}/antonyms.json`` as ``method.task_source`` where the official URL prefix goes; the
  loopback OpenAI-compatible server (data.llm.serve, scripted: a tiny model cannot follow instructions)
  as the black box (``method.base_url``; the model name stays the paper's gpt-3.5-turbo, which the run
  checks against the server's model list first);
- sizes: BO points and batches, CMA-ES population, demos, dev and test examples, instruction tokens;
- hardware: ``hardware.accelerator=cpu`` (no GPU here); the paper's fp16 open LLM stays.
"""

from __future__ import annotations

import json
import threading
import zlib
from pathlib import Path

import pytest

from data.llm.client import ChatRequest
from data.llm.serve import make_server, serve_in_thread
from tests.paper.cli import python, report, sweep_grid
from tests.paper.standins import official_induction_task, tiny_causal_lm
from tests.paper.test_ifd_paper import env_for

EXPERIMENT = "conf/experiment/instructzero_tasks.yaml"
ARMS = ("instructzero", "random", "ape")


class ScriptedBlackBox:
    """gpt-3.5-turbo as the server lists it. Answers the antonym for some (instruction, input) pairs and a
    wrong word for the others, a deterministic function of both, so instructions get different dev
    scores. Records every request."""

    identity = "gpt-3.5-turbo"

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers
        self.requests: list[ChatRequest] = []
        self.lock = threading.Lock()

    def complete(self, request: ChatRequest) -> str:
        text = request.messages[-1]["content"]
        with self.lock:
            self.requests.append(request)
        word = text.rsplit("Input: ", 1)[1].split("\n")[0]
        right = zlib.crc32(text.encode()) % 3 != 0
        return self.answers.get(word, "no") if right else "maybe"


def test_paper_scale_sweeps_the_papers_32_tasks_and_arms_with_their_numbers() -> None:
    from data.induction_tasks import OFFICIAL_TASKS

    grid, cfg = sweep_grid("instructzero_tasks", "paper")
    tasks = grid["method.task"]
    assert len(tasks) == len(set(tasks)) == 32 and set(tasks) <= set(OFFICIAL_TASKS)
    assert grid["method.arm"] == list(ARMS) and grid["seed"] == ["0", "1", "2"]
    paper = cfg.report.paper.metrics.test
    assert sorted(paper) == sorted(tasks) and all(set(paper[t]) == set(ARMS) for t in tasks)
    assert dict(paper.cause_and_effect) == {"ape": 0.44, "random": 0.40, "instructzero": 0.91}
    assert all(0 <= v <= 1 for t in tasks for v in paper[t].values())
    small, _ = sweep_grid("instructzero_tasks", "small")
    assert small == {
        "method.task": ["larger_number", "lowercase"],
        "method.arm": ["instructzero", "matern", "random", "ape"],
        "seed": ["0", "1", "2"],
    }


@pytest.mark.slow
def test_rehearsal_of_the_paper_configuration_one_task(tmp_path: Path) -> None:
    raw = official_induction_task(tmp_path / "instruction_induction" / "raw", "antonyms", 20, 8)
    examples = [
        e
        for split in ("induce", "execute")
        for e in json.loads((raw / split / "antonyms.json").read_text())["examples"].values()
    ]
    llm = ScriptedBlackBox({e["input"]: e["output"] for e in examples})
    server = make_server(llm)
    serve_in_thread(server)
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    model = tiny_causal_lm(tmp_path / "vicuna-13b-v1.3", "llama")
    sweep = tmp_path / "sweep"
    sizes = [
        "seed=0",
        "method.n_demos=3",
        "method.n_dev=4",
        "method.n_test=5",
        "method.max_instruction_tokens=6",
        "method.n_init=3",
        "method.n_iterations=1",
        "method.batch_size=2",
        "method.n_starts=2",
        "method.cma_popsize=4",
        "method.cma_max_generations=2",
    ]
    args = ["-m", "experiment=instructzero_tasks", "scale=paper", "method.task=antonyms", *sizes]
    args += ["method.arm=" + ",".join(ARMS), f"model.name={model}", f"method.task_source={raw}"]
    args += [f"method.base_url={url}", "hardware.name=cpu", "hardware.accelerator=cpu", "logger=none"]
    args += [f"hydra.sweep.dir={sweep}"]
    env = env_for(tmp_path)
    try:
        run = python("run.py", *args, env=env, timeout=600)
        assert run.returncode == 0, run.stderr[-3000:]
    finally:
        server.shutdown()
        server.server_close()
    records = {}
    for path in sweep.rglob("results.json"):
        record = json.loads(path.read_text())
        records[record["config"]["method"]["arm"]] = (path.parent, record)
    assert sorted(records) == sorted(ARMS)
    prompts = {r.messages[-1]["content"] for r in llm.requests}
    assert {r.max_tokens for r in llm.requests} == {256} and {r.temperature for r in llm.requests} == {0.0}
    for run_dir, record in records.values():
        assert record["status"] == "completed" and record["scale"] == "paper"
        c, m = record["config"], record["metrics"]
        assert (c["model"]["dtype"], c["method"]["black_box_model"], c["method"]["projection_scale"]) == (
            "float16",
            "gpt-3.5-turbo",
            "official",
        )
        assert m["evaluations"] == 5 and 0 <= m["test"] <= 1 and 0 <= m["best_dev"] <= 1
        # Each instruction reached the black box whole (all its lines), in the official zero-shot template.
        rows = [json.loads(x) for x in (run_dir / "instructions.jsonl").read_text().splitlines()]
        for row in rows:
            asked = [p for p in prompts if p.startswith(f"Instruction: {row['instruction']}\n\nInput: ")]
            assert len(asked) >= 4, row["instruction"]

    text = report(sweep, EXPERIMENT, env)
    assert "scale: paper" in text and "3/3 runs completed" in text
    assert "paper instructzero" in text and "paper ape" in text and "0.85" in text and "0.72" in text
