"""`make table-mera SCALE=paper`, rehearsed: the paper's grid as composed, and one cell of it run end to end.

The grid test reads the sweep the experiment file gives at each scale (no training). The rehearsal runs
`run.py -m experiment=mera_fewshot scale=paper` for one cell (BERT-base, MRPC, seed 0; the rows full
fine-tuning and same-track MerA) with only sizes and sources overridden: a tiny random BERT saved with
save_pretrained where the hub name goes (model.name), GLUE stand-ins in the hub's layout and columns
(method.glue), random adapters saved in AdapterHub's format under the published ids' names
(method.adapter_dir). Then the generic report and MerA's table, checked for the cells, the F1 beside the
accuracy and the paper's gain beside ours. What this cannot show: bert-base / roberta-base speed and
memory, the real adapters' and GLUE's numbers (README, MerA section).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.paper.standins import adapterhub_adapters, hub_glue, tiny_bert

ROOT = Path(__file__).resolve().parent.parent.parent
EXPERIMENT = "conf/experiment/mera_fewshot.yaml"
TASKS = ("mnli", "rte", "qnli", "qqp", "stsb", "mrpc", "sst2", "cola")
VARIANTS = ["scratch", "full_ft", "single", "fusion", "average", "mera"]
VARIANTS += ["average_same_track", "mera_same_track"]


def compose_paper(overrides: list[str]) -> object:
    from hydra import compose, initialize_config_dir

    from runners.schemas import register_all

    register_all()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("config", ["experiment=mera_fewshot", *overrides], return_hydra_config=True)


def sweep_lines(scale: str) -> dict[str, list[str]]:
    """The sweeper's parameters at ``scale``, each as the list of values it sweeps."""
    params = compose_paper([f"scale={scale}"]).hydra.sweeper.params
    return {key: str(params[key]).split(",") for key in params}


def test_paper_grid_is_both_backbones_by_mrpc_and_mnli_by_every_row_and_small_keeps_its_rows() -> None:
    grid = sweep_lines("paper")
    assert grid == {
        "seed": ["0", "1", "2", "3", "4"],
        "method.backbone": ["bert-base-uncased", "roberta-base"],
        "method.target": ["mrpc", "mnli"],
        "method.variant": VARIANTS,
    }
    small = sweep_lines("small")
    assert small["method.variant"] == VARIANTS and small["method.target"] == ["entail/list"]
    assert small["method.backbone"] == ["null"] and len(small["seed"]) == 5


@pytest.mark.parametrize("backbone", ["bert-base-uncased", "roberta-base"])
def test_paper_budget_names_each_backbone_and_its_published_adapters(backbone: str) -> None:
    from omegaconf import OmegaConf

    cfg = compose_paper(["scale=paper", f"method.backbone={backbone}", "method.target=mnli"])
    assert (cfg.model.name, cfg.model.source, cfg.model.pooling) == (backbone, "hub", "native")
    m = OmegaConf.to_container(cfg.method, resolve=True)
    assert [p["id"] for p in m["published"]] == [f"AdapterHub/{backbone}-pf-{t}" for t in TASKS]
    tracks = {p["id"].rsplit("-pf-", 1)[1]: p["track"] for p in m["published"]}
    assert tracks == {
        **dict.fromkeys(("mnli", "rte", "qnli"), "nli"),
        **dict.fromkeys(("qqp", "stsb", "mrpc"), "sts"),
        "sst2": "sentiment",
        "cola": "lingaccept",
    }
    assert m["test_size"] is None and m["glue"] == "nyu-mll/glue" and m["adapter_dir"] is None


@pytest.mark.slow
def test_rehearsal_of_the_paper_table_one_cell_one_seed(tmp_path: Path) -> None:
    model = tiny_bert(tmp_path / "bert-base-uncased")
    ids = [f"AdapterHub/bert-base-uncased-pf-{t}" for t in TASKS]
    adapters = adapterhub_adapters(tmp_path / "adapters", model, ids, reduction_factor=4)
    glue = hub_glue(tmp_path / "glue", {"mrpc": {"train": 48, "validation": 60, "test": 8}})
    sweep = tmp_path / "sweep"
    sizes = [
        "seed=0",
        "method.backbone=bert-base-uncased",
        "method.target=mrpc",
        "method.variant=full_ft,mera_same_track",
        "method.shots=[2,4]",
        "method.pool_per_class=8",
        "method.tune_steps=3",
        "method.tune_batch=4",
        "method.max_length=32",
        "method.eval_batch=32",
    ]
    sources = [f"model.name={model}", f"method.glue={glue}", f"method.adapter_dir={adapters}"]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "WANDB_MODE": "disabled",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_DATASETS_CACHE": str(tmp_path / "hf_datasets"),
        "REPROLAB_CACHE": str(tmp_path / "cache"),
    }
    args = ["-m", "experiment=mera_fewshot", "scale=paper", *sizes, *sources, "logger=none"]
    run = subprocess.run(
        [sys.executable, "run.py", *args, f"hydra.sweep.dir={sweep}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]

    records = {}
    for path in sweep.rglob("results.json"):
        record = json.loads(path.read_text())
        records[record["config"]["method"]["variant"]] = (path.parent, record)
    assert sorted(records) == ["full_ft", "mera_same_track"]
    for _, record in records.values():
        assert record["status"] == "completed" and record["scale"] == "paper"
        m, enc = record["config"]["method"], record["config"]["model"]
        # Sources and sizes are ours; everything else is the paper's configuration.
        assert (enc["name"], enc["pooling"], m["backbone"]) == (str(model), "native", "bert-base-uncased")
        assert m["test_size"] is None and m["target"] == "mrpc" and m["task_source"] == "glue"
        assert [p["id"] for p in m["published"]] == ids
        assert (m["tune_lr"], m["full_ft_lr"]) == pytest.approx((1.0e-4, 2.0e-5))
        metrics = record["metrics"]
        for k in (2, 4):
            assert 0.0 <= metrics[f"acc_k{k}"] <= 1.0 and 0.0 <= metrics[f"f1_k{k}"] <= 1.0
    run_dir, mera = records["mera_same_track"]
    # the sts track without the target's own pf-mrpc adapter: qqp and stsb, loaded from their folders
    assert mera["metrics"]["n_merged"] == pytest.approx(2)
    meta = json.loads((run_dir / "merged" / "adapter_config.json").read_text())
    assert meta["merged_from"] == [f"AdapterHub__bert-base-uncased-pf-{t}" for t in ("qqp", "stsb")]
    sources_json = json.loads((run_dir / "sources.json").read_text())
    assert {s["location"] for s in sources_json} == {str(adapters / i) for i in ids}
    tune = json.loads((run_dir / "tune.json").read_text())
    assert all("f1" in row for row in tune)

    for command in (
        ["-m", "runners.report", str(sweep), "--experiment", EXPERIMENT],
        ["-m", "methods.mera.table", str(sweep)],
    ):
        done = subprocess.run(
            [sys.executable, *command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr[-3000:]
    text = (sweep / "table.md").read_text()
    assert "scale: paper" in text and "2/2 runs completed" in text
    row = next(line for line in text.splitlines() if line.startswith("| bert-base-uncased | mrpc |"))
    assert len(row.strip("|").split("|")) == 4  # backbone, target, full_ft, mera_same_track
    ours = 100 * records["full_ft"][1]["metrics"]["acc_k2"]
    assert f"{ours:.1f}" in text.split("## acc_k2 (%)", 1)[1].split("##", 1)[0]

    by_k = (sweep / "table_by_k.md").read_text()
    assert "## bert-base-uncased · mrpc" in by_k
    assert "Test accuracy (%) on the held-out target mrpc" in by_k and "Test F1 (positive class) (%)" in by_k
    gain = 100 * (mera["metrics"]["acc_k2"] - records["full_ft"][1]["metrics"]["acc_k2"])
    assert f"K=2: {gain:+.1f}" in by_k and "Paper (few-shot GLUE, BERT/RoBERTa): MRPC +3.5." in by_k
