"""MerA's target tuning under data parallelism: 2 gloo ranks, each with its share of every K-shot batch,
take the steps of one process (uneven shares included) and gather the test predictions of one process;
`hardware=ddp` on 2 CPU processes runs the smoke row through run.py, with one results record by rank 0."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from methods.mera.model import Classifier, predict, train
from methods.mera.parallel import gather_rows, local_rows, shard

WORLD, N, BATCH, STEPS = 2, 7, 5, 3  # batches of 5 rows: shares of 3 and 2


def _setup() -> tuple[Classifier, dict[str, torch.Tensor], np.ndarray]:
    """A dropout-free tiny BERT classifier (dropout would draw other masks per rank) and 7 labelled rows."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    model = Classifier(BertModel(config), num_classes=2)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 50, (N, 6), generator=g)
    mask = torch.ones(N, 6, dtype=torch.long)
    mask[::2, 4:] = 0
    return model, {"input_ids": ids, "attention_mask": mask}, np.array([0, 1, 1, 0, 1, 0, 0])


def _run(fabric: object = None) -> dict[str, object]:
    model, enc, labels = _setup()
    loss = train(model, model.parameters(), enc, labels, STEPS, BATCH, lr=1e-2, seed=0, fabric=fabric)
    preds = predict(model, enc, batch_size=2, fabric=fabric)
    return {
        "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "loss": loss,
        "preds": preds,
    }


def _rank(rank: int, port: int, out: str) -> None:
    from lightning.fabric import Fabric

    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        WORLD_SIZE=str(WORLD),
        LOCAL_RANK=str(rank),
        NODE_RANK="0",
    )
    torch.set_num_threads(1)
    fabric = Fabric(accelerator="cpu", devices=WORLD, strategy="ddp_find_unused_parameters_true")
    fabric.launch()
    torch.save(_run(fabric), f"{out}.{rank}")


def test_shares_and_shards_cover_every_row_once() -> None:
    class Ranks:
        world_size = 3

        def __init__(self, rank: int) -> None:
            self.global_rank = rank

    idx = torch.arange(7)
    assert sorted(torch.cat([local_rows(idx, Ranks(r)) for r in range(3)]).tolist()) == list(range(7))
    assert [shard(7, Ranks(r)) for r in range(3)] == [slice(0, 3), slice(3, 6), slice(6, 7)]
    assert shard(1, Ranks(2)) == slice(1, 1)  # nothing left for the last rank
    assert local_rows(idx, None) is idx and gather_rows(idx, 7, None) is idx
    with pytest.raises(ValueError, match="cannot be split over 3 ranks"):
        local_rows(torch.arange(2), Ranks(0))


@pytest.mark.slow
def test_two_gloo_ranks_tune_and_predict_as_one_process(tmp_path: Path) -> None:
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    want = _run()
    out = str(tmp_path / "rank")
    mp.spawn(_rank, args=(port, out), nprocs=WORLD, join=True)
    untrained = _setup()[0].state_dict()
    for rank in range(WORLD):
        got = torch.load(f"{out}.{rank}", weights_only=False)
        # Adam divides each gradient by its own scale, so float rounding in near-zero gradients moves a
        # weight by up to ~1e-5 here; a wrongly weighted share (a plain mean per rank) moves it by ~lr (1e-2)
        for name, weight in want["state"].items():
            torch.testing.assert_close(got["state"][name], weight, rtol=1e-4, atol=1e-4)
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-5)
        assert got["preds"].tolist() == want["preds"].tolist() and len(got["preds"]) == N
    head = "head.weight"
    assert (want["state"][head] - untrained[head]).abs().max() > 1e-3  # the steps moved the weights


@pytest.mark.slow
def test_mera_smoke_ddp_two_cpu_processes_through_run_py(cli, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    out = cli(
        "method=mera",
        "scale=smoke",
        "method.shots=[2]",
        "hardware=ddp",
        "hardware.accelerator=cpu",
        "hardware.devices=2",
        f"hydra.run.dir={run_dir}",
        env={"WANDB_MODE": "offline", "WANDB_SILENT": "true"},
        timeout=400,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in out.stdout + out.stderr
    record = json.loads((run_dir / "results.json").read_text())
    assert record["status"] == "completed" and len(record["attempts"]) == 1
    assert 0.0 <= record["metrics"]["acc_k2"] <= 1.0
    rows = json.loads((run_dir / "tune.json").read_text())
    assert [r["k"] for r in rows] == [2] and rows[0]["init"] == "mera"
    assert len(list((run_dir / "wandb").glob("offline-run-*"))) == 1  # rank 0's run only
    assert not list(run_dir.glob("**/results.json.*"))


def test_mera_declares_ddp_and_refuses_fsdp() -> None:
    from runners.validate import ConfigError, validate_overrides

    cpu2 = ["hardware.accelerator=cpu", "hardware.devices=2"]
    assert (
        validate_overrides(["method=mera", "scale=smoke", "hardware=ddp", *cpu2]).hardware.strategy == "ddp"
    )
    with pytest.raises(ConfigError, match=r"method=mera cannot use hardware=fsdp .* it supports ddp"):
        validate_overrides(["method=mera", "scale=smoke", "hardware=fsdp"])
