"""The paper-scale benchmarks of a tuned instruction model: the Open LLM Leaderboard tasks through
lm-eval (data.instructions.leaderboard) and AlpacaEval (data.instructions.alpaca_eval)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import data.instructions.test_sets as test_sets
from data.instructions.alpaca_eval import load_alpaca_eval, model_outputs, win_rate
from data.instructions.leaderboard import LeaderboardConfig
from data.llm.judge import Verdict
from tests.paper.standins import hub_alpaca_eval, open_llm_leaderboard_tasks, write_json

# ---------------------------------------------------------------- AlpacaEval


def test_alpaca_eval_reads_the_hub_layout_a_file_and_names_a_bad_item(tmp_path: Path) -> None:
    folder = hub_alpaca_eval(tmp_path / "hub", n=4)
    items = load_alpaca_eval(str(folder), limit=3)
    assert len(items) == 3 and items == load_alpaca_eval(str(folder / "alpaca_eval.json"))[:3]
    assert sorted(items[0]) == ["dataset", "generator", "instruction", "output"]
    assert items[0]["generator"] == "text_davinci_003"
    with pytest.raises(test_sets.TestSetError, match=r"holds no alpaca_eval\.json"):
        load_alpaca_eval(str(tmp_path))
    bad = write_json(tmp_path / "bad.json", [{"instruction": "x", "output": "y"}, {"prompt": "z"}])
    with pytest.raises(test_sets.TestSetError, match=r"item 1: .* got prompt"):
        load_alpaca_eval(str(bad))


def test_alpaca_eval_win_rate_counts_ties_half_and_outputs_keep_its_format() -> None:
    verdicts = [Verdict("q", [8, 2], [2, 8], "win", "win", v) for v in ("win", "win", "tie", "lose", "tie")]
    out = win_rate(verdicts)
    assert (out["alpaca_eval_win"], out["alpaca_eval_tie"], out["alpaca_eval_lose"]) == (2.0, 2.0, 1.0)
    assert out["alpaca_eval_win_rate"] == pytest.approx((2 + 2 / 2) / 5)
    assert "alpaca_eval_win_rate" not in win_rate([])  # no items: no rate, not a NaN
    items = [{"instruction": "a?", "output": "ref", "generator": "text_davinci_003", "dataset": "koala"}]
    assert model_outputs(items, ["ours"], "ifd_ifd_top") == [
        {"instruction": "a?", "output": "ours", "generator": "ifd_ifd_top", "dataset": "koala"}
    ]


# ---------------------------------------------------------------- the leaderboard

PAPER_TASKS = {
    "arc": {"task": "arc_challenge", "num_fewshot": 25, "metric": "acc_norm"},
    "mmlu": {"task": "mmlu", "num_fewshot": 5, "metric": "acc"},
}


@pytest.fixture(scope="module")
def tasks_and_model(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tests.paper.standins import tiny_causal_lm

    root = Path(tmp_path_factory.mktemp("leaderboard"))
    folder = open_llm_leaderboard_tasks(root / "tasks", n=3)
    path = tiny_causal_lm(root / "llama", "llama")
    return folder, AutoModelForCausalLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)


def test_a_folder_holding_every_configured_task_is_indexed_alone(tasks_and_model: tuple) -> None:
    from data.instructions.leaderboard import task_manager

    folder = tasks_and_model[0]
    manager = task_manager(LeaderboardConfig(tasks=PAPER_TASKS, include_path=str(folder)))
    assert {"arc_challenge", "mmlu", "hellaswag", "truthfulqa_mc2"} <= set(manager.all_tasks)
    assert len(manager.all_tasks) < 30  # not the harness's thousands of built-in tasks
    with pytest.raises(FileNotFoundError, match="include_path"):
        task_manager(LeaderboardConfig(tasks=PAPER_TASKS, include_path=str(folder / "missing")))


@pytest.mark.slow
def test_a_local_group_of_built_in_tasks_gets_the_full_index(tmp_path: Path) -> None:
    """A group in include_path whose children are built-in tasks resolves only with the harness's index:
    the folder alone would pass the check and fail at the leaderboard stage, after the tuning."""
    from data.instructions.leaderboard import check_tasks, task_manager
    from tests.paper.standins import lm_eval_local_group

    lm_eval_local_group(tmp_path, "mine", ["copa"])  # copa: a built-in task, not in this folder
    cfg = LeaderboardConfig(tasks={"mine": {"task": "mine", "num_fewshot": 0}}, include_path=str(tmp_path))
    check_tasks(cfg)
    manager = task_manager(cfg)
    assert {"copa", "mine"} <= set(manager.all_tasks)  # the harness's index, with the local group on top


def test_a_bad_task_or_metric_names_the_key(tasks_and_model: tuple) -> None:
    from data.instructions.leaderboard import evaluate_leaderboard

    folder, model, tokenizer = tasks_and_model
    wrong_metric = {"arc": {"task": "arc_challenge", "num_fewshot": 0, "metric": "mc2"}}
    cfg = LeaderboardConfig(tasks=wrong_metric, limit=1, include_path=str(folder))
    with pytest.raises(ValueError, match=r"tasks.arc.metric='mc2': task arc_challenge reports acc, acc_norm"):
        evaluate_leaderboard(model, tokenizer, cfg)
    with pytest.raises(ValueError, match="num_fewshot must be >= 0"):
        LeaderboardConfig(tasks={"arc": {"task": "arc_challenge", "num_fewshot": -1}})


@pytest.mark.slow
def test_the_leaderboard_equals_simple_evaluate_per_task_and_averages_a_group_over_its_subjects(
    tasks_and_model: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each task with its own shot count in one pass gives what lm-eval's simple_evaluate gives for that
    task alone; a group scores the unweighted mean of its leaf tasks (the leaderboard's MMLU)."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from data.instructions.leaderboard import evaluate_leaderboard

    folder, model, tokenizer = tasks_and_model
    contexts: list[str] = []
    real = HFLM.loglikelihood

    def spy(self: HFLM, requests: list, *args: object, **kwargs: object) -> list:
        contexts.extend(r.args[0] for r in requests)
        return real(self, requests, *args, **kwargs)

    monkeypatch.setattr(HFLM, "loglikelihood", spy)
    ours = evaluate_leaderboard(
        model, tokenizer, LeaderboardConfig(tasks=PAPER_TASKS, limit=2, include_path=str(folder))
    )
    # the shots reach the model: ARC's contexts hold 25 solved questions and the asked one; MMLU's 5 + 1
    arc = [c for c in contexts if c.startswith("Question:")]
    assert arc and all(c.count("Question:") == 26 for c in arc)
    mmlu = [c for c in contexts if not c.startswith("Question:")]
    assert mmlu and all(c.count("Answer:") == 6 for c in mmlu)
    monkeypatch.setattr(HFLM, "loglikelihood", real)
    manager = TaskManager(include_path=str(folder), include_defaults=False)
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=8)
    for column, spec in PAPER_TASKS.items():
        out = lm_eval.simple_evaluate(
            model=lm,
            tasks=[spec["task"]],
            num_fewshot=spec["num_fewshot"],
            limit=2,
            task_manager=manager,
            bootstrap_iters=0,
            log_samples=False,
        )
        metric = f"{spec['metric']},none"
        if column == "mmlu":
            leaves = [out["results"][f"mmlu_{s}"][metric] for s in ("abstract_algebra", "anatomy")]
            expected = sum(leaves) / 2
        else:
            expected = out["results"][spec["task"]][metric]
        assert out["n-shot"][spec["task"] if column == "arc" else "mmlu_anatomy"] == spec["num_fewshot"]
        assert ours[f"leaderboard_{column}"] == pytest.approx(expected, abs=1e-9)
    assert ours["leaderboard_average"] == pytest.approx(
        (ours["leaderboard_arc"] + ours["leaderboard_mmlu"]) / 2
    )


def test_the_stage_list_grows_only_when_the_benchmarks_are_configured() -> None:
    from methods.alpagasus.method import AlpaGasus
    from methods.ifd.method import IFD

    assert IFD().evaluation_stages() == [] and AlpaGasus().evaluation_stages() == []
    ifd = IFD(leaderboard={"tasks": PAPER_TASKS}, alpaca_eval={"source": "tatsu-lab/alpaca_eval"})
    assert ifd.evaluation_stages() == ["leaderboard", "alpaca_eval", "alpaca_eval_judge"]
    assert ifd.cfg.leaderboard.tasks["arc"].num_fewshot == 25
    json.dumps(ifd.stage_reads())  # every stage declares what it reads
    assert set(ifd.evaluation_stages()) <= set(ifd.stage_reads())


def test_the_data_stage_refuses_a_bad_benchmark_source_or_task_naming_the_key(
    tmp_path: Path, tasks_and_model: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checked before the tuning, as a ConfigError (run.py prints it without a traceback)."""
    from lm_eval.tasks import TaskManager
    from omegaconf import OmegaConf

    import data.instructions.leaderboard as leaderboard
    from methods.ifd.method import IFD
    from runners.context import RunContext
    from runners.validate import ConfigError

    ctx = RunContext(cfg=OmegaConf.create({"seed": 0}), out_dir=tmp_path)
    sizes = {"n_train": 4, "eval_per_family": 1}
    missing = IFD(**sizes, alpaca_eval={"source": str(tmp_path / "nowhere.json")})
    with pytest.raises(ConfigError, match=r"method\.alpaca_eval\.source=.*nowhere\.json: .*does not exist"):
        missing.stage_data(ctx)
    folder = tasks_and_model[0]
    # the local index only (the harness's own one takes a minute to build on 2 cores)
    monkeypatch.setattr(
        leaderboard, "task_manager", lambda cfg: TaskManager(include_path=str(folder), include_defaults=False)
    )
    typo = IFD(**sizes, leaderboard={"tasks": {"arc": {"task": "arc_challnge"}}})
    with pytest.raises(ConfigError, match=r"tasks\.arc\.task='arc_challnge' is not an lm-eval task"):
        typo.stage_data(ctx)
    IFD(**sizes, leaderboard={"tasks": PAPER_TASKS}).stage_data(ctx)  # known names pass
    assert (tmp_path / "train.jsonl").exists()


def test_alpaca_eval_leaves_pairs_without_a_parsed_reply_out_of_n() -> None:
    """Both orders unparsed: no preference, dropped from N (AlpacaEval drops non-preferences); the share of
    unparsed replies is reported beside the rate."""
    parsed = [
        Verdict("q", [8, 2], [2, 8], "win", "win", "win"),
        Verdict("q", [8, 2], None, "win", "unparsed", "win"),
    ]
    unparsed = [Verdict("q", None, None, "unparsed", "unparsed", "tie")] * 2
    out = win_rate(parsed + unparsed)
    assert out["alpaca_eval_n"] == 2.0 and out["alpaca_eval_win_rate"] == pytest.approx(1.0)
    assert out["alpaca_eval_unparsed_share"] == pytest.approx(5 / 8)
    assert "alpaca_eval_win_rate" not in win_rate(unparsed)  # nothing judged: no rate
