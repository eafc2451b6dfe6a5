"""MerA with AdapterHub's `adapters` on the offline MiniLM encoder: a merged adapter is an ordinary
adapter (save / load round trip), and merging with a permuted copy keeps the model's function."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from methods.mera.config import TextEncoderConfig
from methods.mera.merge import extract, merge, permute, to_state
from methods.mera.model import Classifier, adapter_config, bottleneck_activations, load_encoder

TEXTS = ["the list names lock, mode and key.", "mode is on the list."]


@pytest.fixture(scope="module")
def encoder_and_tokenizer() -> tuple:
    torch.manual_seed(0)
    encoder, tokenizer = load_encoder(TextEncoderConfig())
    encoder.add_adapter("a", config=adapter_config(96))  # r = 384 / 96 = 4
    with torch.no_grad():  # a trained-looking adapter: large enough weights to change the outputs
        for name, p in encoder.named_parameters():
            if ".adapters.a." in name:
                p.normal_(0, 0.2)
    encoder.set_active_adapters("a")
    encoder.eval()
    return encoder, tokenizer


def hidden(encoder, tokenizer) -> torch.Tensor:
    with torch.no_grad():
        return encoder(**tokenizer(TEXTS, padding=True, return_tensors="pt")).last_hidden_state


def test_merging_with_permuted_copy_keeps_the_function_and_round_trips(encoder_and_tokenizer, tmp_path: Path):
    encoder, tokenizer = encoder_and_tokenizer
    encoder.set_active_adapters("a")
    reference = hidden(encoder, tokenizer)
    original = extract(encoder.state_dict(), "a")
    assert len(original) == 6 and original["encoder.layer.0.output"]["down_w"].shape == (4, 384)
    g = torch.Generator().manual_seed(0)
    shuffled = {loc: permute(u, torch.randperm(4, generator=g)) for loc, u in original.items()}
    merged, _ = merge([original, shuffled], "weight")
    plain, _ = merge([original, shuffled], "none")

    for name, weights in (("merged", merged), ("plain", plain)):
        encoder.add_adapter(name, config=adapter_config(96))
        result = encoder.load_state_dict(to_state(weights, name), strict=False)
        assert not result.unexpected_keys
    encoder.set_active_adapters("merged")
    assert torch.allclose(hidden(encoder, tokenizer), reference, atol=1e-5)
    encoder.set_active_adapters("plain")  # averaging without alignment changes the function
    assert not torch.allclose(hidden(encoder, tokenizer), reference, atol=1e-3)

    # Saved in AdapterHub format with its track tag, and loadable like any published adapter.
    encoder.save_adapter(str(tmp_path / "merged"), "merged", meta_dict={"track": "entail"})
    meta = json.loads((tmp_path / "merged" / "adapter_config.json").read_text())
    assert meta["track"] == "entail" and meta["config"]["reduction_factor"] == 96
    fresh, _ = load_encoder(TextEncoderConfig())
    fresh.load_adapter(str(tmp_path / "merged"), load_as="loaded", set_active=True)
    fresh.eval()
    back = extract(fresh.state_dict(), "loaded")
    assert all(torch.equal(back[loc]["up_w"], merged[loc]["up_w"]) for loc in merged)
    assert torch.allclose(hidden(fresh, tokenizer), reference, atol=1e-5)
    encoder.set_active_adapters("a")


def test_bottleneck_activations_have_one_row_per_real_token(encoder_and_tokenizer) -> None:
    encoder, tokenizer = encoder_and_tokenizer
    model = Classifier(encoder, 2)
    enc = dict(tokenizer(TEXTS, padding=True, return_tensors="pt"))
    acts = bottleneck_activations(model, "a", enc)
    assert sorted(acts) == [f"encoder.layer.{i}.output" for i in range(6)]
    n_tokens = int(enc["attention_mask"].sum())
    assert acts["encoder.layer.5.output"].shape == (n_tokens, 4)
    assert (acts["encoder.layer.0.output"] >= 0).all()  # after the ReLU
