"""Rehearsal of IFD's paper configuration (``scale=paper``, conf/budget/ifd/paper.yaml) offline, as
DESIGN.md "Paper scale, and its rehearsal" says: the ifd_top and full arms of the ``ifd_selection`` sweep
(one seed) through run.py, the both-order judge over it, then the report, with only sizes and sources
overridden:

- sources: a tiny random Llama (save_pretrained) as ``model.name``, Alpaca-format JSON as ``method.data``,
  the four test sets in their official JSONL schemas as ``method.test_sets.*``, the Open LLM Leaderboard
  tasks under their lm-eval names (the harness's own task files over local JSONL in the hub datasets'
  schemas) as ``method.leaderboard.include_path``, AlpacaEval's hub file as ``method.alpaca_eval.source``,
  the loopback OpenAI-compatible server (data.llm.serve, scripted) as the judge (``method.judge.base_url``);
- sizes: records, clusters, batch, epochs, answer tokens, leaderboard documents, AlpacaEval items;
- hardware: ``hardware.accelerator=cpu`` (no GPU here; the paper budget asks for one). The precision stays
  the paper's bf16-mixed (CPU autocast), so the fp32-master path runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from data.llm.client import ChatRequest
from data.llm.serve import make_server, serve_in_thread
from tests.paper.cli import report
from tests.paper.standins import (
    alpaca_records,
    hub_alpaca_eval,
    official_test_sets,
    open_llm_leaderboard_tasks,
    tiny_causal_lm,
    write_json,
)

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENT = "conf/experiment/ifd_selection.yaml"


class ScriptedJudge:
    """Two scores on the first line, a deterministic function of the prompt (a tiny model cannot judge)."""

    identity = "scripted-judge"

    def __init__(self) -> None:
        self.seen: list[str] = []

    def complete(self, request: ChatRequest) -> str:
        text = request.messages[-1]["content"]
        self.seen.append(text)
        h = zlib.crc32(text.encode())
        return f"{3 + h % 5} {3 + (h // 7) % 5}\nA scripted review."


def sources(tmp_path: Path) -> list[str]:
    model = tiny_causal_lm(tmp_path / "llama-7b", "llama")
    data = write_json(tmp_path / "alpaca_data.json", alpaca_records(100))
    sets = official_test_sets(tmp_path / "test_data", n=2)
    return [
        f"model.name={model}",
        f"method.data={data}",
        *(f"method.test_sets.{name}={path}" for name, path in sets.items()),
    ]


def benchmark_sources(tmp_path: Path) -> list[str]:
    """The sources of IFD's paper-scale benchmarks: the leaderboard tasks' folder, AlpacaEval's hub folder."""
    return [
        f"method.leaderboard.include_path={open_llm_leaderboard_tasks(tmp_path / 'lm_eval_tasks', n=2)}",
        f"method.alpaca_eval.source={hub_alpaca_eval(tmp_path / 'alpaca_eval', n=3)}",
    ]


def env_for(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "WANDB_MODE": "disabled",
        "REPROLAB_CACHE": str(tmp_path / "cache"),
    }


@pytest.mark.slow
def test_rehearsal_of_the_paper_configuration_ifd_top_vs_full(tmp_path: Path) -> None:
    judge = ScriptedJudge()
    server = make_server(judge)
    serve_in_thread(server)
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    sweep = tmp_path / "sweep"
    sizes = [
        "seed=0",
        "method.n_train=100",
        "method.clusters=2",
        "method.per_cluster=3",
        "method.tuning.batch_size=4",
        "method.tuning.micro_batch_size=4",
        "method.tuning.epochs=1",
        "method.max_new_tokens=8",
        "method.leaderboard.limit=2",
        "method.alpaca_eval.limit=3",
    ]
    args = ["-m", "experiment=ifd_selection", "scale=paper", "method.arm=ifd_top,full", *sizes]
    args += [
        *sources(tmp_path),
        *benchmark_sources(tmp_path),
        f"method.judge.base_url={url}",
        "hardware.name=cpu",
        "hardware.accelerator=cpu",
    ]
    args += ["logger=none", f"hydra.sweep.dir={sweep}"]
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
        assert sorted(records) == ["full", "ifd_top"]
        for run_dir, record in records.values():
            assert record["status"] == "completed" and record["scale"] == "paper"
            m, hw = record["config"]["method"], record["config"]["hardware"]
            # everything but sizes and sources is the paper's configuration
            assert (m["rate"], m["clusters"], m["max_length"]) == (0.06, 2, 512)
            assert (m["tuning"]["mode"], m["tuning"]["lr"], m["tuning"]["warmup_ratio"]) == (
                "full",
                2e-5,
                0.03,
            )
            assert hw["precision"] == "bf16-mixed" and (m["judge"]["model"], m["judge"]["max_tokens"]) == (
                "gpt-4",
                1024,
            )
            predictions = [json.loads(x) for x in (run_dir / "predictions.jsonl").read_text().splitlines()]
            assert [p["family"] for p in predictions] == ["vicuna"] * 2 + ["koala"] * 2 + ["wizardlm"] * 2 + [
                "sinstruct"
            ] * 2
            assert all(p["hit"] is None for p in predictions)
            # the tuned full weights were saved in model.dtype with their tokenizer
            assert (run_dir / "tuned" / "tokenizer_config.json").exists()
            # the Open LLM Leaderboard, the paper's tasks and shots, through lm-eval on the tuned model
            tasks = {
                k: (v["task"], v["num_fewshot"], v["metric"]) for k, v in m["leaderboard"]["tasks"].items()
            }
            assert tasks == {
                "arc": ("arc_challenge", 25, "acc_norm"),
                "hellaswag": ("hellaswag", 10, "acc_norm"),
                "mmlu": ("mmlu", 5, "acc"),
                "truthfulqa": ("truthfulqa_mc2", 0, "acc"),
            }
            metrics = record["metrics"]
            scores = [metrics[f"leaderboard_{k}"] for k in tasks]
            assert all(0.0 <= x <= 1.0 for x in scores)
            assert metrics["leaderboard_average"] == pytest.approx(sum(scores) / 4)
            # AlpacaEval: answers in its model_outputs format, judged against the references in both orders
            outputs = json.loads((run_dir / "alpaca_eval_outputs.json").read_text())
            assert [sorted(o) for o in outputs] == [["dataset", "generator", "instruction", "output"]] * 3
            counts = [metrics[f"alpaca_eval_{k}"] for k in ("win", "tie", "lose")]
            assert sum(counts) == 3 == len((run_dir / "alpaca_eval_verdicts.jsonl").read_text().splitlines())
            assert metrics["alpaca_eval_win_rate"] == pytest.approx((counts[0] + counts[1] / 2) / 3)
        top = records["ifd_top"][1]["metrics"]
        assert top["n_selected"] == int(top["n_scored"] * (1 - top["ifd_above_one_share"]) * 0.06 + 1e-9)

        judged = subprocess.run(
            [sys.executable, "-m", "data.instructions.judge_runs", str(sweep), "--reference", "full"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert judged.returncode == 0, judged.stderr[-3000:]
        references = [
            item["output"] for item in json.loads((tmp_path / "alpaca_eval/alpaca_eval.json").read_text())
        ]
        in_run = [text for text in judge.seen if any(ref in text for ref in references)]
        assert (
            len(in_run) >= 2 * 3
        )  # AlpacaEval in the runs: both orders of each item (arms may share answers)
        assert len(judge.seen) - len(in_run) == 2 * 8  # both orders of every test item, the run's own judge
        metrics = json.loads((records["ifd_top"][0] / "results.json").read_text())["metrics"]
        for name in ("vicuna", "koala", "wizardlm", "sinstruct"):
            counts = [metrics[f"judge_{name}_{k}"] for k in ("win", "tie", "lose")]
            assert sum(counts) == 2
            assert metrics[f"judge_{name}_winning_score"] == pytest.approx((counts[0] - counts[2]) / 2 + 1)
    finally:
        server.shutdown()

    text = report(sweep, EXPERIMENT, env)
    assert "scale: paper" in text and "2/2 runs completed" in text
    assert "judge_vicuna_winning_score" in text and "paper ifd_top" in text and "1.29" in text
    # the leaderboard average and AlpacaEval in percent, the paper's numbers beside
    section = text.split("## leaderboard_average (%)")[1].split("## ")[0]
    assert "paper full" in section and "52.1" in section and "50.2" in section
    assert "34.7" in text.split("## alpaca_eval_win_rate (%)")[1].split("## ")[0]
