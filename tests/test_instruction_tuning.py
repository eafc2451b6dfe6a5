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
