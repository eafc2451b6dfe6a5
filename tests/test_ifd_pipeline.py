"""IFD's pre-experience pick and the whole pipeline through run.py (smoke scale, SmolLM2 offline)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from methods.ifd.pre_experience import pick_pre_experience


def test_pre_experience_picks_evenly_from_each_clusters_middle_perplexity_band() -> None:
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    embeddings = np.concatenate([c + 0.1 * rng.standard_normal((9, 2)) for c in centres])
    perplexities = np.tile(np.arange(1.0, 10.0), 3)  # 1..9 in each cluster: P25 = 3, P75 = 7
    picked = pick_pre_experience(embeddings, perplexities, clusters=3, per_cluster=3, seed=0)
    assert picked == pick_pre_experience(embeddings, perplexities, clusters=3, per_cluster=3, seed=0)
    # per cluster the band is perplexity 3..7 (5 members, dataset order); data_by_cluster.py strides by
    # 5 // 3 = 1 from the first and keeps 3: perplexities 3, 4 and 5
    assert sorted(perplexities[picked].tolist()) == [3.0, 3.0, 3.0, 4.0, 4.0, 4.0, 5.0, 5.0, 5.0]
    assert sorted(np.array(picked) // 9) == [0, 0, 0, 1, 1, 1, 2, 2, 2]


@pytest.mark.slow
def test_ifd_pipeline_smoke_run(cli, tmp_path: Path) -> None:
    """The whole pipeline, logged to an offline W&B run as every method's run is."""
    env = {"WANDB_MODE": "offline"}
    env |= {n: str(tmp_path / n.lower()) for n in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR")}
    out = cli("method=ifd", "scale=smoke", f"hydra.run.dir={tmp_path}", env=env, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    runs = list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1
    data = runs[0].read_bytes()  # protobuf records: their strings appear as they are
    assert b"select/n_selected" in data and b"exact_match" in data  # a stage summary, the final metric
    record = json.loads((tmp_path / "results.json").read_text())
    metrics = record["metrics"]
    assert record["status"] == "completed"
    assert sorted(p.stem for p in (tmp_path / "stages").glob("*.json")) == sorted(
        ["data", "pre_experience", "score", "select", "tune", "evaluate"]
    )
    scores = [json.loads(line) for line in (tmp_path / "scores.jsonl").read_text().splitlines()]
    selection = json.loads((tmp_path / "selection.json").read_text())
    kept = [s for s in scores if s["ifd"] <= 1.0]
    assert len(selection) == int(len(kept) * 0.25) == metrics["n_selected"]
    chosen = sorted((s for s in scores if s["id"] in set(selection)), key=lambda s: -s["ifd"])
    assert min(s["ifd"] for s in chosen) >= max(s["ifd"] for s in kept if s["id"] not in set(selection))
    assert 0.0 <= metrics["exact_match"] <= 1.0 and metrics["n_eval"] == 16
    assert (tmp_path / "tuned" / "adapter_config.json").exists()


def test_a_fully_tuned_model_is_reloaded_once_in_the_configured_dtype_and_device(
    tmp_path: Path, monkeypatch
) -> None:
    """SelectionPipeline.adapter loads the tuned folder alone (no base model first) with model.dtype and
    model.device_map, instead of from_pretrained(path) in fp32 on the CPU."""
    import torch
    from omegaconf import OmegaConf

    import data.instructions.selection as selection
    from data.config import CausalLMConfig
    from methods.ifd.method import IFD
    from runners.context import RunContext
    from tests.paper.standins import tiny_causal_lm

    base = tiny_causal_lm(tmp_path / "base", "llama")
    model_cfg = CausalLMConfig(name=str(base), source="hub", dtype="bfloat16", device_map="cpu")
    cfg = OmegaConf.create({"seed": 0, "model": OmegaConf.structured(model_cfg)})
    ctx = RunContext(cfg=cfg, out_dir=tmp_path / "run")
    method = IFD(tuning={"mode": "full"})
    trained = method.trainable_model(ctx)  # full mode: fp32 masters whatever model.dtype says
    assert trained.model.dtype == torch.float32
    method.save_tuned(ctx, trained.model, trained.tokenizer, "tuned")
    assert (ctx.out_dir / "tuned" / "tokenizer_config.json").exists()

    loads = []
    real = selection.load_causal_lm
    monkeypatch.setattr(selection, "load_causal_lm", lambda cfg, *a: loads.append(cfg) or real(cfg, *a))
    model, tokenizer = method.adapter(ctx, "tuned")
    assert [c.name for c in loads] == [str(ctx.out_dir / "tuned")]  # once, and not the base model
    assert (loads[0].dtype, loads[0].device_map) == ("bfloat16", "cpu")
    assert model.dtype == torch.bfloat16 and model.device.type == "cpu"
    assert tokenizer("hello").input_ids == trained.tokenizer("hello").input_ids
    saved = dict(trained.model.named_parameters())
    for name, p in model.named_parameters():
        assert torch.allclose(p.float(), saved[name].detach().to(torch.bfloat16).float())


def _scored_run(tmp_path: Path, n: int = 100) -> tuple[list, object]:
    """A run dir whose scores.jsonl holds n records: IFD 0.01 .. 1.2 spread, two with no answer tokens."""
    from omegaconf import OmegaConf

    from data.instructions.records import InstructionRecord
    from data.instructions.selection import write_jsonl
    from runners.context import RunContext

    train = [InstructionRecord(f"r{i}", f"q{i}", "", f"a{i}") for i in range(n)]
    rows = []
    for i, r in enumerate(train):
        tokens = 0 if i in (3, 7) else 5
        conditioned = float("nan") if tokens == 0 else 0.012 * (i + 1)
        rows.append({"id": r.id, "conditioned": conditioned, "direct": 1.0, "answer_tokens": tokens})
    ctx = RunContext(cfg=OmegaConf.create({"seed": 0}), out_dir=tmp_path)
    tmp_path.mkdir(parents=True, exist_ok=True)
    write_jsonl(tmp_path / "scores.jsonl", rows)
    return train, ctx


def test_ifd_arms_take_the_same_number_of_records_and_skip_unscoreable_ones(tmp_path: Path) -> None:
    """Top, bottom and random all take int(len(kept) × rate) records, kept = IFD ≤ 1 with answer tokens
    (official data_by_IFD.py); a record with no answer tokens (NaN) is never selected or sorted."""
    from methods.ifd.method import IFD

    train, ctx = _scored_run(tmp_path)
    picks = {
        arm: IFD(arm=arm, rate=0.06).selected_ids(ctx, train) for arm in ("ifd_top", "ifd_bottom", "random")
    }
    kept = [i for i in range(100) if i not in (3, 7) and 0.012 * (i + 1) <= 1.0]  # 81 records
    n = int(len(kept) * 0.06)
    assert {arm: len(ids) for arm, ids in picks.items()} == {"ifd_top": n, "ifd_bottom": n, "random": n}
    assert picks["ifd_top"] == [f"r{i}" for i in sorted(kept, reverse=True)[:n]]
    assert picks["ifd_bottom"] == ["r0", "r1", "r2", "r4"]  # r3 has no answer tokens
    assert IFD(arm="random").scoring_stages() == ["pre_experience", "score"]
    assert IFD(arm="full").scoring_stages() == []


def test_the_wizardlm_prompt_is_a_template_choice() -> None:
    from data.instructions.records import InstructionRecord
    from data.instructions.template import format_prompt

    record = InstructionRecord("x", "Name a colour.", "", "red")
    assert format_prompt(record, "wizardlm") == "Name a colour.\n\n### Response:"
    with_input = InstructionRecord("y", "Translate.", "bonjour", "hello")
    assert format_prompt(with_input, "wizardlm") == "Translate.\nbonjour\n\n### Response:"
    assert format_prompt(record) == format_prompt(record, "alpaca")


def test_the_paper_budget_selects_the_paper_model_hardware_and_evaluation(compose) -> None:
    cfg = compose(["method=ifd", "scale=paper"])
    assert cfg.model.name == "yahma/llama-7b-hf" and cfg.model.source == "hub"
    assert (cfg.hardware.accelerator, cfg.hardware.precision) == ("gpu", "bf16-mixed")
    assert cfg.method.rate == pytest.approx(0.06) and cfg.method.max_new_tokens == 1024
    assert sorted(cfg.method.test_sets) == ["koala", "sinstruct", "vicuna", "wizardlm"]
    assert (cfg.method.judge.backend, cfg.method.judge.model) == ("openai", "gpt-4")
    alpagasus = compose(["method=alpagasus", "scale=paper"])
    assert alpagasus.model.name == "yahma/llama-7b-hf" and alpagasus.hardware.accelerator == "gpu"
    assert alpagasus.method.max_new_tokens == 1024 and alpagasus.method.judge.model == "gpt-4"


def test_several_ranks_load_whole_copies_not_an_accelerate_spread(tmp_path: Path, monkeypatch) -> None:
    """model.device_map (auto at paper scale) spreads one copy over every GPU; under ddp/fsdp each rank
    needs its own copy for Lightning to place or shard, so the map is dropped there and kept otherwise."""
    from omegaconf import OmegaConf

    import data.instructions.selection as selection
    from data.config import CausalLMConfig
    from methods.ifd.method import IFD
    from runners.context import RunContext
    from tests.paper.standins import tiny_causal_lm

    base = tiny_causal_lm(tmp_path / "base", "llama")
    model_cfg = OmegaConf.structured(CausalLMConfig(name=str(base), source="hub", device_map="cpu"))
    loads = []
    real = selection.load_causal_lm
    monkeypatch.setattr(selection, "load_causal_lm", lambda cfg, *a: loads.append(cfg) or real(cfg, *a))
    for devices, strategy in ((1, "auto"), (2, "ddp")):
        hardware = {"accelerator": "cpu", "devices": devices, "strategy": strategy, "num_nodes": 1}
        cfg = OmegaConf.create({"seed": 0, "model": model_cfg, "hardware": hardware})
        IFD(tuning={"mode": "lora"}).trainable_model(RunContext(cfg=cfg, out_dir=tmp_path / "run"))
    assert [c.device_map for c in loads] == ["cpu", None]
