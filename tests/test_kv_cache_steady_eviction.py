"""The steady-decoding fast path of ``EvictingLayer`` (one argmin, the newest entry moved into the freed
slot, views made once per buffer set) keeps exactly what the plain path keeps (top-k of the priorities,
re-gathered, every step), with the same logits, on the three families H2O runs; a deep copy decodes on
its own buffers."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import AutoModelForCausalLM

from data.llm.attention import observing, register_observed_attention
from data.llm.eviction import make_policy
from data.llm.kv_cache import EvictingCache
from tests.paper.standins import tiny_causal_lm


@pytest.fixture(scope="module", params=["llama", "opt", "gpt_neox"])
def tiny(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> torch.nn.Module:
    folder = tiny_causal_lm(tmp_path_factory.mktemp(request.param) / "model", request.param)
    model = AutoModelForCausalLM.from_pretrained(folder, attn_implementation=register_observed_attention())
    with torch.no_grad():  # sharper, token-dependent attention: the heavy hitters change as it decodes
        for name, weight in model.named_parameters():
            if any(part in name for part in ("q_proj", "k_proj", "query_key_value")):
                weight *= 16
    return model.eval()


def kept(cache: EvictingCache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per layer, the kept positions and their scores in position order (slot order carries no meaning)."""
    out = []
    for layer in cache.layers:
        order = layer.positions.argsort(-1)
        out.append((layer.positions.gather(-1, order), layer.scores.gather(-1, order)))
    return out


@torch.no_grad()
def step(model: torch.nn.Module, cache: EvictingCache, ids: torch.Tensor) -> torch.Tensor:
    with observing(cache.observe):
        return model(ids, past_key_values=cache, use_cache=True).logits


@pytest.mark.parametrize("policy", ["h2o", "streaming"])
def test_fast_eviction_keeps_what_the_topk_path_keeps(tiny: torch.nn.Module, policy: str) -> None:
    layers = tiny.config.num_hidden_layers
    ids = torch.randint(4, 300, (2, 44), generator=torch.Generator().manual_seed(7))

    def cache() -> EvictingCache:
        return EvictingCache(layers, make_policy(policy, recent=4, sinks=2), budget=10)

    fast, plain = cache(), cache()
    for layer in plain.layers:  # the plain path at every step: top-k of the priorities, then re-gather
        layer._evict_one = layer._compress
    torch.testing.assert_close(
        step(tiny, fast, ids[:, :20]), step(tiny, plain, ids[:, :20]), atol=1e-5, rtol=0
    )
    twin = None
    for t in range(20, 44):
        if t == 32:
            twin = copy.deepcopy(fast)  # from here the copy decodes beside the original
        got, want = step(tiny, fast, ids[:, t : t + 1]), step(tiny, plain, ids[:, t : t + 1])
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
        if twin is not None:
            torch.testing.assert_close(step(tiny, twin, ids[:, t : t + 1]), got, atol=0, rtol=0)
        for (fp, fs), (pp, ps) in zip(kept(fast), kept(plain), strict=True):
            assert torch.equal(fp, pp)
            torch.testing.assert_close(fs, ps, atol=1e-6, rtol=1e-5)
        assert all(layer.keys.shape[2] == 10 for layer in fast.layers)
    assert any(int(p.min()) < 44 - 10 for p, _ in kept(fast))  # not merely the newest 10 tokens
    for layer, plain_layer in zip(fast.layers, plain.layers, strict=True):  # keys and values follow
        order, plain_order = layer.positions.argsort(-1), plain_layer.positions.argsort(-1)
        for a, b in ((layer.keys, plain_layer.keys), (layer.values, plain_layer.values)):
            torch.testing.assert_close(
                a.gather(2, order[..., None].expand_as(a)), b.gather(2, plain_order[..., None].expand_as(b))
            )
