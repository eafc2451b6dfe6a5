"""`make table-diffusion SCALE=paper`, rehearsed: the paper's grid as composed, and one cell of it run end to
end.

The grid test reads the sweep the experiment file gives at each scale (no training). The rehearsal runs
`run.py -m experiment=diffusion_probe scale=paper` with only sizes (epochs, batch size, the U-Net's width
and head width: the tiny ADM keeps the paper's 256x256 levels, so its 37 blocks are numbered as the
paper's) and sources (`method.adm.checkpoint`: a tiny random-weight checkpoint in guided-diffusion's
state_dict layout where the published URL goes; `data.hub_id`: a folder in ILSVRC/imagenet-1k's parquet
layout, both written by tests/paper/standins.py; hardware=cpu) overridden, one cell and one seed, then the
report, and checks that the cell and everything not a size stayed the paper's.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

from tests.paper.cli import REHEARSAL_ACCELERATOR, markdown_rows, python, report, sweep_grid
from tests.paper.standins import hub_imagenet_repo, tiny_adm_checkpoint

ROOT = Path(__file__).resolve().parent.parent.parent
EXPERIMENT = "conf/experiment/diffusion_probe.yaml"
# The rehearsal's ADM: the paper's flags (256x256 levels, 2 res blocks, attention at 32/16/8) at width 32.
TINY_ADM = {"num_channels": 32, "num_head_channels": 32}


def test_paper_grid_is_the_adm_linear_probe_on_imagenet_and_fgvc_on_gpu_and_small_stays_offline() -> None:
    grid, cfg = sweep_grid("diffusion_probe", "paper")
    assert grid["data"] == ["imagenet1k", "aircraft", "cars", "flowers102"] and grid["hardware"] == ["gpu"]
    assert grid["method.block"] == ["24"] and grid["method.t"] == ["90"]
    m = cfg.method
    assert m.unet_source == "adm" and m.adm.checkpoint.endswith("/jul-2021/256x256_diffusion_uncond.pt")
    assert m.adm.checkpoint.startswith("https://openaipublic.blob.core.windows.net/diffusion/")
    assert (m.adm.image_size, m.adm.num_channels, m.adm.num_res_blocks, m.adm.num_head_channels) == (
        256,
        256,
        2,
        64,
    )
    assert (m.probe_protocol, m.head, m.epochs, m.batch_size, m.lr_step, m.momentum) == (
        "official",
        "linear",
        28,
        128,
        7,
        0.0,
    )
    assert m.val_fraction == pytest.approx(0.0) and m.shots == 0 and m.features == "unet"

    small, small_cfg = sweep_grid("diffusion_probe", "small")
    assert small["data"] == ["digits"] and small["hardware"] == ["cpu"]
    assert small["method.block"] == ["down.0", "down.1", "mid", "up.0", "up.1"]
    assert small["method.t"] == ["10", "50", "150", "400"]
    assert small_cfg.method.unet_source == "train" and small_cfg.method.val_fraction == pytest.approx(0.3)


def test_paper_data_configs_name_the_hub_sets() -> None:
    from runners.schemas import register_all
    from runners.validate import compose_config

    register_all()
    expected = {
        "imagenet1k": ("ILSVRC/imagenet-1k", "image", "label", "train", "validation"),
        "aircraft": ("HuggingFaceM4/FGVC-Aircraft", "image", "variant", "train+validation", "test"),
        "cars": ("tanganke/stanford_cars", "image", "label", "train", "test"),
        "flowers102": ("Donghyun99/Oxford-Flower-102", "image", "label", "train+validation", "test"),
    }
    for name, (hub_id, image, label, train, test) in expected.items():
        data = compose_config(["experiment=diffusion_probe", "scale=paper", f"data={name}"]).data
        got = (data.hub_id, data.image_column, data.label_column, data.train_split, data.test_split)
        assert data.source == "hub" and data.image_size == 256 and got == (hub_id, image, label, train, test)


@pytest.mark.slow
def test_rehearsal_of_the_paper_table_one_cell_one_seed(tmp_path: Path) -> None:
    from methods.diffusion_cls.config import ADMConfig

    hub = hub_imagenet_repo(tmp_path / "imagenet-1k", {"train": 4, "validation": 2, "test": 2})
    checkpoint = tiny_adm_checkpoint(tmp_path / "256x256_diffusion_uncond.pt", ADMConfig(**TINY_ADM), seed=1)
    sweep = tmp_path / "sweep"
    cell = ["data=imagenet1k", "seed=0"]
    sizes = [
        "method.epochs=1",
        "method.batch_size=4",
        *(f"method.adm.{k}={v}" for k, v in TINY_ADM.items()),
    ]
    sources = [f"data.hub_id={hub}", f"method.adm.checkpoint={checkpoint}", "hardware=cpu"]
    cache = tmp_path / "cache"
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "WANDB_MODE": "disabled",
        "HF_HUB_OFFLINE": "1",
        "REPROLAB_CACHE": str(cache),
    }
    args = ["-m", "experiment=diffusion_probe", "scale=paper", *cell, *sizes, *sources]
    run = python("run.py", *args, f"hydra.sweep.dir={sweep}", env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]

    (path,) = list(sweep.rglob("results.json"))
    record = json.loads(path.read_text())
    assert record["status"] == "completed" and record["scale"] == "paper", record.get("error_message")
    cfg = record["config"]
    m, data = cfg["method"], cfg["data"]
    # Sizes and sources are ours; everything else is the paper's configuration.
    assert (m["epochs"], m["batch_size"], m["adm"]["num_channels"], m["adm"]["num_head_channels"]) == (
        1,
        4,
        32,
        32,
    )
    assert m["adm"]["checkpoint"] == str(checkpoint) and (m["unet_source"], m["block"], m["t"]) == (
        "adm",
        "24",
        90,
    )
    assert (m["adm"]["image_size"], m["adm"]["num_res_blocks"], m["adm"]["attention_resolutions"]) == (
        256,
        2,
        "32,16,8",
    )
    # pooling and lr null: the official scripts' per head (AdaptiveAvgPool2d(2), 1e-2 for the linear head)
    assert (m["probe_protocol"], m["head"], m["pooling"], m["lr"], m["lr_step"]) == (
        "official",
        "linear",
        None,
        None,
        7,
    )
    assert (m["shots"], m["val_fraction"], m["momentum"], m["weight_decay"]) == (0, 0.0, 0.0, 0.0)
    assert (data["name"], data["source"], data["hub_id"], data["image_size"]) == (
        "imagenet1k",
        "hub",
        str(hub),
        256,
    )
    assert (data["train_split"], data["test_split"]) == ("train", "validation")
    assert cfg["hardware"]["accelerator"] == REHEARSAL_ACCELERATOR
    assert 0.0 <= record["metrics"]["test_acc"] <= 1.0
    assert not list((cache / "diffusion_cls").rglob("features/*.pt"))  # official: nothing stored

    text = report(sweep, EXPERIMENT, env)
    assert "scale: paper" in text and "1/1 runs completed" in text
    (row,) = markdown_rows(text, "test_acc (↑)")
    assert "imagenet1k" in row.values() and "24" in row.values()
    assert float(row["90"].strip("*").split()[0]) == pytest.approx(record["metrics"]["test_acc"], abs=0.0051)

    with (sweep / "table.csv").open() as f:
        cells = [r for r in csv.DictReader(f) if r["metric"] == "test_acc"]
    assert len(cells) == 1 and cells[0]["paper"] == ""  # NOT FOUND in the paper: nothing printed beside ours
