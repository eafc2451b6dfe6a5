"""IFD's pre-experience set as the official data_by_cluster.py builds it, and its prompt statistics as
data_analysis.py --mod pre computes them (one prompt at a time, truncated to max_length)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from data.instructions.records import InstructionRecord
from data.instructions.template import format_prompt
from methods.ifd.pre_experience import (
    pick_pre_experience,
    pre_experience_text,
    prompt_embeddings,
    prompt_perplexities,
    sample_middle_band,
)


def test_the_middle_band_is_sampled_in_dataset_order_and_small_clusters_stay_whole() -> None:
    # cluster 0: 12 members, perplexities out of order; cluster 1: 2 members (< per_cluster: kept whole);
    # cluster 2: 5 members whose band (P25..P75 of 1..5 = 2..4) has 3 < per_cluster members: kept whole
    labels = np.array([0] * 12 + [1, 1] + [2] * 5)
    ppl0 = [12, 1, 7, 3, 9, 5, 11, 2, 8, 4, 10, 6]  # P25 = 3.75, P75 = 9.25: band = 7, 9, 5, 8, 4, 6
    perplexities = np.array([*ppl0, 100, 0.5, 5, 1, 4, 2, 3], dtype=float)
    picked = sample_middle_band(labels, perplexities, per_cluster=4)
    # cluster 0's band in dataset order is indices 2, 4, 5, 8, 9, 11; 6 // 4 = 1: the first four of them
    assert picked == [2, 4, 5, 8, 12, 13, 16, 17, 18]  # clusters 0, 1, 2 (cluster 2: perplexities 4, 2, 3)
    # with per_cluster 3 the stride is 6 // 3 = 2: band positions 0, 2, 4
    assert sample_middle_band(labels, perplexities, per_cluster=3)[:3] == [2, 5, 9]
    # the band's bounds are inclusive and come from the configured percentiles
    whole = sample_middle_band(labels[:12], perplexities[:12], per_cluster=12, low=0, high=100)
    assert whole == list(range(12))


def test_pick_pre_experience_clusters_then_samples_each_cluster() -> None:
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [10.0, 0.0]])
    embeddings = np.concatenate([c + 0.1 * rng.standard_normal((8, 2)) for c in centres])[
        [0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15]
    ]  # the two clusters interleaved in dataset order
    perplexities = np.arange(16, dtype=float)
    picked = pick_pre_experience(embeddings, perplexities, clusters=2, per_cluster=2, seed=0)
    assert picked == pick_pre_experience(embeddings, perplexities, clusters=2, per_cluster=2, seed=0)
    groups = [picked[:2], picked[2:]]
    # each cluster's band (P25..P75 of its 8 perplexities) has 4 members; stride 2 from the first
    assert sorted(groups) == [[4, 8], [5, 9]]


def test_the_wizardlm_pre_experience_text_is_the_bare_instruction() -> None:
    record = InstructionRecord("x", "Translate.", "bonjour", "hello")
    assert pre_experience_text(record, "wizardlm") == "Translate."
    assert pre_experience_text(record, "alpaca") == format_prompt(record, "alpaca")


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tests.paper.standins import tiny_causal_lm

    path = tiny_causal_lm(Path(tmp_path_factory.mktemp("llama")), "llama")
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.padding_side = "left"  # what a chat tokenizer may say: the embedding must not depend on it
    return AutoModelForCausalLM.from_pretrained(path).eval(), tokenizer


def test_batched_prompt_statistics_equal_the_official_one_prompt_forward(tiny_llama: tuple) -> None:
    model, tokenizer = tiny_llama
    records = [
        InstructionRecord("a", "Give three tips for staying healthy.", "", "x"),
        InstructionRecord("b", "Eat a balanced diet because", "exercise regularly and sleep well", "y"),
        InstructionRecord("c", "True or False?", "", "z"),
    ]
    max_length = 24  # shorter than prompts a and b: truncated as tokenizer.encode(truncation=True)
    embeddings = prompt_embeddings(model, tokenizer, records, batch_size=3, max_length=max_length)
    perplexities = prompt_perplexities(model, tokenizer, records, batch_size=3, max_length=max_length)
    for k, record in enumerate(records):
        prompt = format_prompt(record)
        ids = tokenizer.encode(prompt, return_tensors="pt", truncation=True, max_length=max_length)
        assert ids.shape[1] <= max_length
        with torch.no_grad():
            out = model(ids, labels=ids, output_hidden_states=True)
        expected = out.hidden_states[-1].mean(dim=1)[0].numpy()
        np.testing.assert_allclose(embeddings[k], expected, rtol=1e-4, atol=1e-5)
        assert perplexities[k] == pytest.approx(torch.exp(out.loss).item(), rel=1e-4)
    assert tokenizer.padding_side == "left"


def test_the_pipeline_puts_its_models_on_the_runners_device() -> None:
    """SelectionPipeline.on_device: a model goes to ctx.device, one that accelerate spread over several
    devices keeps its placement."""
    from omegaconf import OmegaConf

    from data.instructions.selection import SelectionPipeline
    from runners.context import RunContext

    ctx = RunContext(cfg=OmegaConf.create({"seed": 0}), out_dir=Path("/tmp/unused"))
    ctx.device = torch.device("meta")  # a device no model starts on
    moved = SelectionPipeline.on_device(torch.nn.Linear(2, 2), ctx)
    assert moved.weight.device.type == "meta"
    spread = torch.nn.Linear(2, 2)
    spread.hf_device_map = {"layer.0": 0, "layer.1": 1}
    assert SelectionPipeline.on_device(spread, ctx).weight.device.type == "cpu"
