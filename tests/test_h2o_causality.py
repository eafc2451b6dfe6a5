"""Causality after eviction, for every family H2O supports: a multi-token chunk fed through a cache
that has already evicted entries must not see its own later tokens (OPT builds its mask apart from the
cache and leaked them before the mask was aligned to the keys)."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, GPTNeoXConfig, LlamaConfig, OPTConfig, PretrainedConfig

from data.llm.attention import observing, register_observed_attention
from data.llm.eviction import make_policy
from data.llm.kv_cache import EvictingCache

VOCAB = 97


def tiny_config(family: str) -> PretrainedConfig:
    if family == "opt":
        return OPTConfig(
            vocab_size=VOCAB,
            hidden_size=32,
            word_embed_proj_dim=32,
            ffn_dim=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=128,
        )
    if family == "llama":
        return LlamaConfig(
            vocab_size=VOCAB,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=128,
        )
    return GPTNeoXConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=128,
    )


def chunk_logits(model: torch.nn.Module, prefix: torch.Tensor, chunk: torch.Tensor) -> torch.Tensor:
    """Prefill ``prefix`` into an H2O cache of 6 entries (evicting 10 of 16), then feed ``chunk`` at once."""
    cache = EvictingCache(2, make_policy("h2o", recent=3), budget=6)
    with torch.no_grad(), observing(cache.observe):
        model(prefix, past_key_values=cache, use_cache=True)
        assert cache.layers[0].keys.shape[-2] == 6  # the prefix really was compressed
        return model(chunk, past_key_values=cache, use_cache=True).logits[0]


@pytest.mark.parametrize("family", ["opt", "llama", "gpt_neox"])
def test_chunk_after_eviction_does_not_see_later_tokens(family: str) -> None:
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(
        tiny_config(family), attn_implementation=register_observed_attention()
    ).eval()
    generator = torch.Generator().manual_seed(1)
    prefix = torch.randint(0, VOCAB, (1, 16), generator=generator)
    chunk = torch.randint(0, VOCAB, (1, 5), generator=generator)
    changed = chunk.clone()
    changed[0, -1] = (chunk[0, -1] + 7) % VOCAB

    base = chunk_logits(model, prefix, chunk)
    # Positions 0..3 must not depend on the last token ...
    torch.testing.assert_close(chunk_logits(model, prefix, changed)[:-1], base[:-1], atol=1e-5, rtol=1e-5)
    # ... nor on any token after them: the chunk cut after position t gives the same logits up to t.
    for t in range(chunk.shape[1] - 1):
        cut = chunk_logits(model, prefix, chunk[:, : t + 1])
        torch.testing.assert_close(cut, base[: t + 1], atol=1e-5, rtol=1e-5)
    # The last position does see its own token (the check above is not vacuous).
    assert not torch.allclose(chunk_logits(model, prefix, changed)[-1], base[-1], atol=1e-4)
