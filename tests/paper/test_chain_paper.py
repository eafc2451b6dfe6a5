"""`make table-chain SCALE=paper`, rehearsed: the paper's grid as composed, and one cell of it run end to end.

The grid test reads the sweep the experiment file gives at each scale (no training). The rehearsal runs
`run.py -m experiment=chain_al scale=paper` with only sizes (label budgets, rounds, steps) and sources
(`data.hub_id`: CIFAR-10 stand-in images in the hub's parquet layout; `method.encoder.name`: a random
ResNet-18 written with save_pretrained; hardware=cpu) overridden, one cell (CIFAR-10, the linear setting,
entropy, CHAIN vs no Firth) and one seed, then the report, and checks that everything not a size stayed
the paper's.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

from tests.paper.cli import REHEARSAL_ACCELERATOR, markdown_rows, python, report, sweep_grid
from tests.paper.standins import hub_image_repo, tiny_resnet18

EXPERIMENT = "conf/experiment/chain_al.yaml"
# Training-set sizes of the paper's benchmarks (CIFAR-10/100: 50,000; SVHN cropped digits: 73,257).
TRAIN_SIZES = {"cifar10": 50_000, "cifar100": 50_000, "svhn": 73_257}


def test_paper_grid_is_coldstartals_protocol_on_the_three_benchmarks_and_small_stays_offline() -> None:
    grid, cfg = sweep_grid("chain_al", "paper")
    assert grid["data"] == ["cifar10", "cifar100", "svhn"] and grid["hardware"] == ["gpu"]
    assert grid["method.model"] == ["linear", "finetune"]  # the paper's linear and deep settings
    assert grid["method.strategy"] == ["entropy", "margin", "largest_margin", "least_confidence"]
    assert grid["method.schedule"] == ["none", "grid", "meta", "chain"] and grid["seed"] == ["0", "1", "2"]
    m = cfg.method
    assert (m.n_initial, m.query_size, m.rounds, m.val_size) == (100, 100, 9, 500)
    assert m.n_initial + m.rounds * m.query_size == 1000  # ColdStartAL's total budget
    assert m.accumulate_val and m.grid_metric == "accuracy" and m.meta_reset
    assert (m.lr, m.optimizer, m.train_steps, m.eval_every * m.patience) == (0.001, "adam", 10_000, 250)
    assert (m.finetune_lr, m.finetune_optimizer) == (0.005, "sgd")  # run.sh's --ftall line
    assert list(m.lam_grid) == [0.0, 0.01, 0.1, 1.0, 3.0] and m.meta_lr == pytest.approx(0.1)
    assert (m.encoder.source, m.encoder.name) == ("hub", "microsoft/resnet-18")
    # every job of the grid has the labels it needs (the issue: 1,500 asked of digits' 1,257)
    for data in grid["data"]:
        assert m.val_size + m.n_initial + m.rounds * m.query_size <= TRAIN_SIZES[data]
    # no paper number could be retrieved: every paper cell is null (printed "—")
    paper = cfg.report.paper.metrics.accuracy
    assert len(paper) == 24 and all(v is None for row in paper.values() for v in row.values())

    small, small_cfg = sweep_grid("chain_al", "small")
    assert (
        small["data"] == ["digits"] and small["hardware"] == ["cpu"] and small["method.model"] == ["linear"]
    )
    assert small["method.strategy"] == ["entropy", "badge"] and len(small["seed"]) == 5
    assert small["method.schedule"] == [
        *("none", "constant_0.01", "constant_0.1", "constant_1", "grid", "meta", "chain")
    ]
    assert small_cfg.method.encoder.source == "pixels" and not small_cfg.method.accumulate_val


def test_paper_data_configs_name_the_hub_sets() -> None:
    from runners.validate import compose_config

    for name, hub_id, config, image, label in (
        ("cifar10", "uoft-cs/cifar10", "plain_text", "img", "label"),
        ("cifar100", "uoft-cs/cifar100", "cifar100", "img", "fine_label"),
        ("svhn", "ufldl-stanford/svhn", "cropped_digits", "image", "label"),
    ):
        data = compose_config(["experiment=chain_al", "scale=paper", f"data={name}"]).data
        assert (data.source, data.hub_id, data.hub_config) == ("hub", hub_id, config)
        assert (data.image_column, data.label_column) == (image, label)


def test_paper_scale_without_the_hub_fails_at_once_naming_the_backbone(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "empty-cache")}
    out = python("run.py", "-m", "experiment=chain_al", "scale=paper", "data=cifar10", env=env, timeout=60)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "method.encoder.name='microsoft/resnet-18'" in out.stderr and "Traceback" not in out.stderr


def test_paper_sweep_checks_its_first_jobs_gpu_and_hub_data_before_launching(tmp_path: Path) -> None:
    """The grid's data= and hardware= come from the experiment's sweeper, not the command line: the CLI
    checks still see them (runners.validate._experiment_sweep_firsts) and refuse at once, no traceback."""
    from runners.validate import gpu_probe

    if gpu_probe():
        pytest.skip("this machine has a GPU: the first check passes")
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_CACHE": str(tmp_path / "hub"),
        "HF_HOME": str(tmp_path),
    }
    base = ["run.py", "-m", "experiment=chain_al", "scale=paper", f"method.encoder.name={tmp_path}"]
    out = python(*base, env=env, timeout=60)  # the data checked first: CIFAR-10 from the hub
    assert out.returncode == 2 and "data.hub_id='uoft-cs/cifar10'" in out.stderr, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    out = python(*base, f"data.hub_id={tmp_path}", env=env, timeout=60)
    assert out.returncode == 2 and "hardware=gpu asks for a CUDA GPU" in out.stderr, out.stderr[-2000:]


@pytest.mark.slow
def test_rehearsal_of_the_paper_table_one_cell_one_seed(tmp_path: Path) -> None:
    hub = hub_image_repo(tmp_path / "cifar10", "cifar10", {"train": 60, "test": 30})
    resnet = tiny_resnet18(tmp_path / "resnet-18")
    sweep = tmp_path / "sweep"
    cell = [
        "data=cifar10",
        "method.model=linear",
        "method.strategy=entropy",
        "method.schedule=none,chain",
        "seed=0",
    ]
    sizes = [
        "method.val_size=20",
        "method.n_initial=10",
        "method.query_size=10",
        "method.rounds=1",
        "method.train_steps=40",
    ]
    sources = [f"data.hub_id={hub}", f"method.encoder.name={resnet}", "hardware=cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1"}
    # datasets' cache names a local folder's build by the folder's name and config: another test's
    # "cifar10" stand-in of another size would be read back in its place
    env["HF_DATASETS_CACHE"] = str(tmp_path / "hf_datasets")
    args = ["-m", "experiment=chain_al", "scale=paper", *cell, *sizes, *sources, f"hydra.sweep.dir={sweep}"]
    run = python("run.py", *args, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]

    records = {}
    for path in sweep.rglob("results.json"):
        record = json.loads(path.read_text())
        records[record["config"]["method"]["schedule"]] = record
    assert sorted(records) == ["chain", "none"]
    for record in records.values():
        assert record["status"] == "completed" and record["scale"] == "paper"
        cfg = record["config"]
        m, data = cfg["method"], cfg["data"]
        # Sizes and sources are ours; everything else is the paper's configuration.
        assert (m["val_size"], m["n_initial"], m["query_size"], m["rounds"], m["train_steps"]) == (
            *(20, 10, 10, 1, 40),
        )
        assert (m["model"], m["lr"], m["accumulate_val"], m["grid_metric"], m["strategy"]) == (
            *("linear", 0.001, True, "accuracy", "entropy"),
        )
        assert m["encoder"] == {"source": "hub", "name": str(resnet), "batch_size": 256}
        assert (data["name"], data["source"], data["hub_id"], data["hub_config"]) == (
            *("cifar10", "hub", str(hub), "plain_text"),
        )
        assert cfg["hardware"]["accelerator"] == REHEARSAL_ACCELERATOR
        assert [v for _, v in record["curves"]["n_labelled"]] == [10, 20]
        assert [v for _, v in record["curves"]["n_val"]] == [10, 20]  # ⌊20 / 2⌋ more each round
        assert 0 <= record["metrics"]["accuracy"] <= 1 and 0 <= record["metrics"]["aulc"] <= 1
    lams = [v for _, v in records["chain"]["curves"]["lambda"]]
    assert lams == pytest.approx([1.0, 0.5])  # CHAIN's λ0 · n0 / n at the start of each fit
    assert all(v == 0 for _, v in records["none"]["curves"]["lambda"])

    text = report(sweep, EXPERIMENT, env)
    assert "scale: paper" in text and "2/2 runs completed" in text
    (row,) = markdown_rows(text, "accuracy (↑)")
    assert {"cifar10", "linear", "entropy"} <= set(row.values())
    ours = float(row["chain"].strip("*").split()[0])
    assert ours == pytest.approx(records["chain"]["metrics"]["accuracy"], abs=0.0051)
    assert row["paper chain"] == "—" and row["paper none"] == "—"  # NOT FOUND in the paper

    with (sweep / "table.csv").open() as f:
        cells = [r for r in csv.DictReader(f) if r["metric"] == "accuracy"]
    assert len(cells) == 2 and all(c["paper"] in ("", "nan", "None") for c in cells)
