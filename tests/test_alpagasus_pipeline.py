"""AlpaGasus selection (threshold / keep-share / random same size / noisy oracle), the grader's AUROC,
the post-hoc judge over a sweep, and the pipeline through run.py (smoke scale, SmolLM2 offline)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from data.instructions.generated import generate
from data.instructions.judge_runs import em_agreement, judge_sweep
from data.llm.client import ChatRequest, LLMClient
from data.llm.judge import Verdict
from methods.alpagasus.grading import Grade, bad_detection_auroc
from methods.alpagasus.method import AlpaGasus
from runners.context import RunContext


def make(**overrides) -> AlpaGasus:
    return AlpaGasus(**{"n_train": 20, **overrides})


def test_threshold_and_keep_share_select_the_highest_grades() -> None:
    grades = [Grade("a", 5.0, ""), Grade("b", 4.5, ""), Grade("c", 4.0, ""), Grade("d", None, "?")]
    assert make().kept_ids(grades) == ["a", "b"]  # score >= 4.5; unparsed never kept
    assert make(keep_share=0.5).kept_ids(grades) == ["a", "b"]  # round(0.5 * 4) = 2 highest
    assert make(keep_share=0.75).kept_ids([Grade("x", 3.0, ""), *grades[:3]]) == ["a", "b", "c"]


def test_auroc_by_hand() -> None:
    grades = [Grade("bad1", 1.0, ""), Grade("bad2", 4.0, ""), Grade("ok1", 4.0, ""), Grade("ok2", 5.0, "")]
    # pairs (bad, clean): (1,4) 1, (1,5) 1, (4,4) 0.5, (4,5) 1 → 3.5 / 4
    assert bad_detection_auroc(grades, {"bad1", "bad2"}) == pytest.approx(0.875)
    unparsed = [Grade("bad1", None, ""), Grade("ok1", 0.0, "")]
    assert bad_detection_auroc(unparsed, {"bad1"}) == pytest.approx(1.0)  # unparsed ranks lowest


def test_oracle_grader_and_random_arm_of_the_same_size(tmp_path: Path) -> None:
    train = generate(40, seed=0, corrupt_share=0.25)
    ctx = RunContext(cfg=OmegaConf.create({"seed": 0}), out_dir=tmp_path)
    perfect = make(arm="oracle_filtered", oracle_noise=0.0)
    grades = perfect.grades(ctx, train)
    assert perfect.kept_ids(grades) == [r.id for r in train if not r.corrupted]
    noisy = make(arm="oracle_filtered", oracle_noise=0.5).grades(ctx, train)
    assert sum(g.score == 5.0 for g in noisy if g.id in {r.id for r in train if r.corrupted}) > 0
    (tmp_path / "grades.jsonl").write_text("".join(json.dumps(g.__dict__) + "\n" for g in grades))
    ids = make(arm="random").selected_ids(ctx, train)
    assert len(ids) == len(perfect.kept_ids(grades)) and ids == make(arm="random").selected_ids(ctx, train)


def test_em_agreement_counts_only_items_where_one_answer_is_right() -> None:
    v = [Verdict("q", None, None, "win", "win", verdict) for verdict in ("win", "lose", "tie", "win")]
    # decisive items: 0 (ours right, win ✓), 1 (theirs right, lose ✓), 2 (ours right, tie ✗); 3 both right
    out = em_agreement(v, [True, False, True, True], [False, True, False, True])
    assert out == {"judge_em_decisive": 3.0, "judge_em_agreement": pytest.approx(2 / 3)}


class ReferenceJudge:
    """A judge LLM stand-in that knows the right answers: 9 for a right answer, 2 for a wrong one."""

    identity = "reference-judge"

    def __init__(self, right: set[str]) -> None:
        self.right = right

    def complete(self, request: ChatRequest) -> str:
        text = request.messages[-1]["content"]
        answers = re.findall(r"\[Answer of Assistant \d\]\n(.*?)\n", text)
        return " ".join("9" if a in self.right else "2" for a in answers) + "\nbecause"


def fake_run(root: Path, arm: str, seed: int, answers: list[str]) -> Path:
    run = root / f"method.arm={arm},seed={seed}"
    run.mkdir(parents=True)
    record = {"method": "alpagasus", "seed": seed, "status": "completed", "metrics": {"exact_match": 1.0}}
    record["config"] = {"method": {"arm": arm}}
    (run / "results.json").write_text(json.dumps(record))
    rows = [
        {"id": f"q{i}", "question": f"question {i}", "answer": a, "hit": a.startswith("right")}
        for i, a in enumerate(answers)
    ]
    (run / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run


def test_judge_sweep_pairs_each_arm_with_the_reference_of_its_seed(tmp_path: Path) -> None:
    filtered = fake_run(tmp_path, "filtered", 0, ["right 0", "right 1", "wrong 2", "right 3"])
    fake_run(tmp_path, "full", 0, ["wrong 0", "right 1", "right 2", "wrong 3"])
    fake_run(tmp_path, "random", 1, ["right 0", "wrong 1", "wrong 2", "wrong 3"])  # no seed-1 reference
    client = LLMClient(ReferenceJudge({"right 0", "right 1", "right 2", "right 3"}))
    results = judge_sweep(tmp_path, client, reference="full")
    assert list(results) == [str(filtered)]
    metrics = json.loads((filtered / "results.json").read_text())["metrics"]
    # q0 win, q1 tie (both right), q2 lose, q3 win: W=2 L=1 N=4 → 1.25; the judge agrees with EM 3/3
    assert (metrics["judge_win"], metrics["judge_tie"], metrics["judge_lose"]) == (2.0, 1.0, 1.0)
    assert metrics["judge_winning_score"] == pytest.approx(1.25) and metrics["exact_match"] == 1.0
    assert metrics["judge_em_agreement"] == pytest.approx(1.0) and client.calls == 8
    assert len((filtered / "judge_vs_full.jsonl").read_text().splitlines()) == 4


@pytest.mark.slow
def test_alpagasus_pipeline_smoke_run(cli, tmp_path: Path) -> None:
    out = cli("method=alpagasus", "scale=smoke", "logger=none", f"hydra.run.dir={tmp_path}", timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    record = json.loads((tmp_path / "results.json").read_text())
    metrics = record["metrics"]
    assert sorted(p.stem for p in (tmp_path / "stages").glob("*.json")) == sorted(
        ["data", "grade", "select", "tune", "evaluate"]
    )
    grades = [json.loads(line) for line in (tmp_path / "grades.jsonl").read_text().splitlines()]
    assert len(grades) == metrics["n_train"] == 24 and all(0 <= g["score"] <= 5 for g in grades)
    selection = set(json.loads((tmp_path / "selection.json").read_text()))
    top = sorted(grades, key=lambda g: (-g["score"], g["id"]))[:12]  # keep_share 0.5 at smoke
    assert selection == {g["id"] for g in top} and metrics["n_selected"] == 12
    assert 0 <= metrics["grader_auroc"] <= 1 and metrics["n_eval"] == 16
    rows = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert {"question", "answer", "hit"} <= set(rows[0])


def test_judge_sweep_reports_each_test_set_and_takes_the_runs_judge(tmp_path: Path) -> None:
    """Open-ended test items (no reference: hit None) are judged per test set: judge_<set>_win/tie/lose
    and winning score; the em agreement skips them; judge_runs reads the runs' method.judge."""
    from data.instructions.judge_runs import run_judge_config

    def run(arm: str, answers: list[str]) -> Path:
        path = fake_run(tmp_path, arm, 0, answers)
        record = json.loads((path / "results.json").read_text())
        record["config"]["method"]["judge"] = {"backend": "openai", "model": "gpt-4", "max_tokens": 1024}
        (path / "results.json").write_text(json.dumps(record))
        rows = [
            {"id": f"{s}/{i}", "family": s, "question": f"q{i}", "answer": a, "reference": None, "hit": None}
            for i, (s, a) in enumerate(zip(["vicuna", "vicuna", "koala"], answers, strict=True))
        ]
        (path / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        return path

    ours = run("filtered", ["right 0", "wrong 1", "right 2"])
    run("full", ["wrong 0", "wrong 1", "wrong 2"])
    client = LLMClient(ReferenceJudge({"right 0", "right 2"}))
    metrics = judge_sweep(tmp_path, client, reference="full")[str(ours)]
    assert (metrics["judge_vicuna_win"], metrics["judge_vicuna_tie"], metrics["judge_vicuna_lose"]) == (
        1,
        1,
        0,
    )
    assert metrics["judge_vicuna_winning_score"] == pytest.approx(1.5)
    assert metrics["judge_koala_winning_score"] == pytest.approx(2.0) and "judge_wizardlm_win" not in metrics
    assert metrics["judge_em_decisive"] == 0 and "judge_em_agreement" not in metrics
    judge = run_judge_config(tmp_path)
    assert (judge.backend, judge.model, judge.max_tokens) == ("openai", "gpt-4", 1024)
