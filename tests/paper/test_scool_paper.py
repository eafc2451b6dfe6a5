"""`make table-scool SCALE=paper`, rehearsed: the paper's grid as composed, and one cell of it run end to end.

The grid test reads the sweep the experiment file gives at each scale (no training). The rehearsal runs
`run.py -m experiment=scool_devices scale=paper` with only sizes (devices, rounds, local steps, samples,
evaluation and sparsification rounds) and sources (`data.hub_id`: a folder in the hub's layout written by
tests/paper/standins.py; hardware=cpu) overridden, one cell and one seed, then the report, and checks
that the cell, the paper's number beside it, and everything not a size stayed the paper's.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.paper.cli import REHEARSAL_ACCELERATOR, markdown_rows, report, sweep_grid
from tests.paper.standins import hub_image_repo

ROOT = Path(__file__).resolve().parent.parent.parent
EXPERIMENT = "conf/experiment/scool_devices.yaml"


def test_paper_grid_is_table_2s_cifar_columns_on_gpu_and_small_stays_offline() -> None:
    grid, cfg = sweep_grid("scool_devices", "paper")
    assert grid["data"] == ["cifar10", "cifar100"] and grid["hardware"] == ["gpu"]
    assert grid["method.partition"] == ["noniid", "noniid_sbm"] and grid["seed"] == [str(s) for s in range(5)]
    assert grid["method.algo"] == ["local", "fedavg", "dpsgd", "scool_sbm", "scool_attention"]
    m = cfg.method
    assert (m.n_devices, m.rounds, m.local_steps, m.batch_size, m.model) == (100, 100, 250, 10, "cnn")
    assert m.augment and m.normalize and m.lr == pytest.approx(0.01)
    paper = cfg.report.paper.metrics.accuracy
    assert paper["cifar10/noniid"].scool_attention == pytest.approx(0.9221)
    assert paper["cifar100/noniid_sbm"].scool_sbm == pytest.approx(0.7227)

    small, small_cfg = sweep_grid("scool_devices", "small")
    assert small["data"] == ["digits"] and small["hardware"] == ["cpu"]
    assert small["method.partition"] == ["noniid", "noniid_sbm", "conflict"]
    assert small["seed"] == ["0", "1", "2"]
    assert small_cfg.method.model == "mlp" and not small_cfg.method.augment


def test_paper_data_configs_name_the_hub_sets() -> None:
    from runners.schemas import register_all
    from runners.validate import compose_config

    register_all()
    for name, hub_id, config, label in (
        ("cifar10", "uoft-cs/cifar10", "plain_text", "label"),
        ("cifar100", "uoft-cs/cifar100", "cifar100", "fine_label"),
    ):
        data = compose_config(["experiment=scool_devices", "scale=paper", f"data={name}"]).data
        assert (data.source, data.hub_id, data.hub_config, data.image_column, data.label_column) == (
            "hub",
            hub_id,
            config,
            "img",
            label,
        )


@pytest.mark.slow
def test_rehearsal_of_the_paper_table_one_cell_one_seed(tmp_path: Path) -> None:
    hub = hub_image_repo(tmp_path / "cifar10", "cifar10", {"train": 60, "test": 30})
    sweep = tmp_path / "sweep"
    cell = ["data=cifar10", "method.partition=noniid", "method.algo=scool_sbm", "seed=0"]
    sizes = [
        "method.n_devices=10",
        "method.rounds=2",
        "method.local_steps=3",
        "method.samples_per_class=3",
        "method.eval_every=1",
        "method.sparsify_round=1",
        "method.eval_chunk=4",
    ]
    sources = [f"data.hub_id={hub}", "hardware=cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1"}
    args = ["-m", "experiment=scool_devices", "scale=paper", *cell, *sizes, *sources]
    args.append(f"hydra.sweep.dir={sweep}")
    run = subprocess.run(
        [sys.executable, "run.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]

    (path,) = list(sweep.rglob("results.json"))
    record = json.loads(path.read_text())
    assert record["status"] == "completed" and record["scale"] == "paper"
    cfg = record["config"]
    m, data = cfg["method"], cfg["data"]
    # Sizes and sources are ours; everything else is the paper's configuration.
    assert (m["n_devices"], m["rounds"], m["local_steps"], m["samples_per_class"]) == (10, 2, 3, 3)
    assert (m["model"], m["batch_size"], m["augment"], m["normalize"]) == ("cnn", 10, True, True)
    assert (m["algo"], m["partition"], m["sbm_blocks"]) == ("scool_sbm", "noniid", 2)
    assert (data["name"], data["source"], data["hub_id"]) == ("cifar10", "hub", str(hub))
    assert (data["hub_config"], data["image_column"], data["label_column"]) == ("plain_text", "img", "label")
    assert cfg["hardware"]["accelerator"] == REHEARSAL_ACCELERATOR
    assert 0 <= record["metrics"]["accuracy_unmasked"] <= record["metrics"]["accuracy"] <= 1
    assert [s for s, _ in record["curves"]["accuracy"]] == [1, 2]

    text = report(sweep, EXPERIMENT, env)
    assert "scale: paper" in text and "1/1 runs completed" in text
    (row,) = [r for r in markdown_rows(text, "accuracy (%) (↑)") if "noniid" in r.values()]
    assert "cifar10" in row.values()
    ours = float(row["scool_sbm"].strip("*").split()[0])
    assert ours == pytest.approx(100 * record["metrics"]["accuracy"], abs=0.51)  # percent, 3 digits
    assert float(row["paper scool_sbm"]) == pytest.approx(91.37, abs=0.051)  # 3 significant digits

    with (sweep / "table.csv").open() as f:
        cells = [r for r in csv.DictReader(f) if r["metric"] == "accuracy"]
    assert len(cells) == 1 and float(cells[0]["paper"]) == pytest.approx(0.9137)
