"""Instruction tuning: response-only labels, and a short LoRA fine-tune that really lowers the loss."""

from __future__ import annotations

import lightning
import pytest
import torch

from data.config import TuningConfig
from data.instructions.generated import generate
from data.instructions.records import InstructionRecord
from data.instructions.template import format_prompt
from data.instructions.tuning import InstructionData, InstructionTuner, collate, encode
from data.llm.loader import load_causal_lm, offline_model

SMOLLM2 = offline_model("smollm2_135m")


@pytest.fixture(scope="module")
def smollm2():
    return load_causal_lm(SMOLLM2)


def test_only_the_response_and_eos_are_labelled(smollm2) -> None:
    tok = smollm2.tokenizer
    record = InstructionRecord("x", "Reverse the word.", "planet", "tenalp")
    item = encode(tok, record, max_length=512)
    n_prompt = len(tok(format_prompt(record)).input_ids)
    assert item["labels"][:n_prompt] == [-100] * n_prompt
    assert item["labels"][n_prompt:] == item["input_ids"][n_prompt:]
    assert item["input_ids"][-1] == tok.eos_token_id
    assert tok.decode(item["input_ids"][n_prompt:-1]) == "tenalp"
    batch = collate([item, encode(tok, InstructionRecord("y", "Say hi.", "", "hi"), 512)], pad_id=0)
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
    assert batch["attention_mask"][1].sum() < batch["attention_mask"][0].sum()


def response_loss(model, data: InstructionData) -> float:
    batch = collate(data.items, data.pad_id)
    with torch.no_grad():
        return model(**batch).loss.item()


@pytest.mark.slow
def test_a_short_lora_fine_tune_lowers_the_response_loss(smollm2, tmp_path) -> None:
    torch.manual_seed(0)
    records = [r for r in generate(400, seed=0) if r.family == "reverse_word" and not r.corrupted][:16]
    cfg = TuningConfig(mode="lora", lr=2e-3, epochs=4, batch_size=8, micro_batch_size=8, lora_r=8)
    data = InstructionData(records, smollm2.tokenizer, cfg, seed=0)
    before = response_loss(smollm2.model, data)
    tuner = InstructionTuner(smollm2.model, cfg, total_steps=cfg.epochs * len(records) // cfg.batch_size)
    trainable = sum(p.numel() for p in tuner.parameters() if p.requires_grad)
    assert 0 < trainable < 0.02 * sum(p.numel() for p in tuner.parameters())  # LoRA: a small share trains
    trainer = lightning.Trainer(
        max_epochs=cfg.epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(tuner, datamodule=data)
    after = response_loss(tuner.model, data)
    assert after < 0.7 * before


# ---------------------------------------------------------------- fp32 master weights (issue 13)


def _tiny_llama(tmp_path, dtype):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tests.paper.standins import tiny_causal_lm

    folder = tmp_path / "llama"
    if not (folder / "config.json").exists():
        tiny_causal_lm(folder, "llama", hidden=64)
    return AutoTokenizer.from_pretrained(folder), AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)


def _mean_update(tmp_path, monkeypatch=None, steps: int = 30) -> float:
    """Mean |Δw| of the weight matrices after ``steps`` full fine-tuning steps at lr 2e-5 from a model
    loaded in bf16 (the weights as a bf16 checkpoint holds them, std 0.02)."""
    from data.instructions.tuning import tune
    from tests.paper.standins import alpaca_records

    tok, model = _tiny_llama(tmp_path, torch.bfloat16)
    init = {n: p.detach().float().clone() for n, p in model.named_parameters() if p.ndim == 2}
    records = [InstructionRecord(str(i), **r) for i, r in enumerate(alpaca_records(16))]
    cfg = TuningConfig(mode="full", lr=2e-5, batch_size=4, micro_batch_size=4, warmup_ratio=0.0)
    tuned = tune(model, tok, records, cfg, seed=0, max_steps=steps)
    moved = [(p.detach().float() - init[n]).abs().mean() for n, p in tuned.named_parameters() if n in init]
    return float(torch.stack(moved).mean())


@pytest.mark.slow
def test_full_tuning_of_a_bf16_model_keeps_the_whole_update(tmp_path, monkeypatch) -> None:
    """AdamW on bf16 parameters rounds most small updates away; tune() keeps fp32 masters, so a model
    loaded in bf16 moves as far as the same weights trained in fp32."""
    import data.instructions.tuning as tuning

    kept = _mean_update(tmp_path)
    # the reference: the same bf16 weights upcast to fp32 by hand, then trained
    tok, model = _tiny_llama(tmp_path, torch.bfloat16)
    reference_model = model.float()
    init = {n: p.detach().clone() for n, p in reference_model.named_parameters() if p.ndim == 2}
    from tests.paper.standins import alpaca_records

    records = [InstructionRecord(str(i), **r) for i, r in enumerate(alpaca_records(16))]
    cfg = TuningConfig(mode="full", lr=2e-5, batch_size=4, micro_batch_size=4, warmup_ratio=0.0)
    tuned = tuning.tune(reference_model, tok, records, cfg, seed=0, max_steps=30)
    reference = float(
        torch.stack(
            [(p.detach() - init[n]).abs().mean() for n, p in tuned.named_parameters() if n in init]
        ).mean()
    )
    assert kept == pytest.approx(reference, rel=0.02)
    assert all(p.dtype == torch.float32 for p in tuned.parameters())
    # what the old code did (AdamW straight on the bf16 parameters) loses most of the update
    monkeypatch.setattr(tuning, "fp32_master_weights", lambda m: m)
    lost = _mean_update(tmp_path)
    assert lost < 0.6 * reference


def test_tune_honours_the_precision_and_clips_gradients_at_one(tmp_path, monkeypatch) -> None:
    """hardware.precision reaches the Trainer (bf16-mixed at paper scale) and gradients are clipped by
    norm at 1.0, as HF Trainer's max_grad_norm default."""
    import data.instructions.tuning as tuning
    from tests.paper.standins import alpaca_records

    seen = {}
    real = lightning.Trainer

    def spy(**kwargs):
        seen.update(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(tuning.lightning, "Trainer", spy)
    tok, model = _tiny_llama(tmp_path, torch.float32)
    records = [InstructionRecord(str(i), **r) for i, r in enumerate(alpaca_records(4))]
    cfg = TuningConfig(mode="full", batch_size=4, micro_batch_size=4)
    tuning.tune(model, tok, records, cfg, seed=0, max_steps=1, precision="bf16-mixed")
    assert seen["precision"] == "bf16-mixed"
    assert seen["gradient_clip_val"] == pytest.approx(1.0)
    assert seen["gradient_clip_algorithm"] == "norm"
