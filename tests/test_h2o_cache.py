"""The evicting KV cache and its policies: hand-computed survivors, GQA, equivalence to the model's own
cache, positions under eviction, real memory savings."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, DynamicCache, LlamaConfig

from data.llm.attention import observed_attention, observing, register_observed_attention
from data.llm.eviction import make_policy
from data.llm.kv_cache import EvictingCache, EvictingLayer, kv_nbytes
from methods.h2o.config import H2OConfig
from methods.h2o.evaluate import streaming_nll


def lower_triangular(rows: list[list[float]]) -> torch.Tensor:
    """Attention weights [batch=1, kv_heads=1, groups=1, q, kv] from a list of rows."""
    return torch.tensor(rows)[None, None, None]


def test_h2o_keeps_recent_and_heavy_hitters_by_hand() -> None:
    layer = EvictingLayer(make_policy("h2o", recent=1), budget=3)
    keys = torch.arange(4.0).view(1, 1, 4, 1)  # key j holds the value j, so survivors are readable
    layer.update(keys, keys.clone())
    # Prefill: column sums of the causal attention matrix are o = [1.8, 0.9, 0.5, 0.8].
    layer.observe(
        lower_triangular(
            [[1.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0], [0.2, 0.3, 0.5, 0.0], [0.1, 0.1, 0.0, 0.8]]
        )
    )
    # Position 3 is recent; of 0..2 the top two by o are 0 (1.8) and 1 (0.9); 2 (0.5) is evicted.
    assert layer.positions.tolist() == [[[0, 1, 3]]]
    assert layer.keys.flatten().tolist() == [0.0, 1.0, 3.0]
    torch.testing.assert_close(layer.scores, torch.tensor([[[1.8, 0.9, 0.8]]]))
    assert layer.get_seq_length() == 4 and layer.get_mask_sizes(torch.tensor([4])) == (4, 1)

    layer.update(torch.full((1, 1, 1, 1), 4.0), torch.full((1, 1, 1, 1), 4.0))
    # Decode token 4 attends to [0, 1, 3, 4] with [0.05, 0.6, 0.05, 0.3]: o = [1.85, 1.5, 0.85, 0.3].
    layer.observe(torch.tensor([0.05, 0.6, 0.05, 0.3]).view(1, 1, 1, 1, 4))
    # 4 is recent; 0 and 1 are the heavy hitters; 3 — a recent token one step ago — is evicted now.
    assert layer.positions.tolist() == [[[0, 1, 4]]]
    torch.testing.assert_close(layer.scores, torch.tensor([[[1.85, 1.5, 0.3]]]))


@pytest.mark.parametrize(
    ("policy", "kept"),
    [("local", [3, 4, 5]), ("streaming", [0, 4, 5]), ("full", [0, 1, 2, 3, 4, 5])],
)
def test_position_based_policies(policy: str, kept: list[int]) -> None:
    layer = EvictingLayer(make_policy(policy, recent=3, sinks=1), budget=3 if policy != "full" else 99)
    x = torch.zeros(1, 1, 6, 1)
    layer.update(x, x)
    layer.observe(torch.full((1, 1, 1, 6, 6), 1 / 6))
    assert layer.positions.tolist() == [[kept]]


def test_random_policy_protects_recent_and_is_seeded() -> None:
    def survivors(seed: int) -> list[int]:
        layer = EvictingLayer(make_policy("random", recent=2, seed=seed), budget=4)
        x = torch.zeros(1, 2, 10, 1)
        layer.update(x, x)
        layer.observe(torch.full((1, 2, 1, 10, 10), 0.1))
        return layer.positions.tolist()

    first = survivors(0)
    assert first == survivors(0)
    assert all(p[-2:] == [8, 9] for p in first[0])  # the two recent positions always survive
    assert first != survivors(1)  # the random picks follow the seed


def test_observed_attention_matches_eager_with_grouped_query_heads() -> None:
    torch.manual_seed(0)
    batch, q_heads, kv_heads, q_len, kv_len, dim = 2, 6, 2, 3, 7, 4
    query = torch.randn(batch, q_heads, q_len, dim)
    key, value = torch.randn(batch, kv_heads, kv_len, dim), torch.randn(batch, kv_heads, kv_len, dim)
    mask = torch.zeros(batch, 1, q_len, kv_len)
    mask[..., -1] = float("-inf")  # hide the last key from every query
    module = torch.nn.Module()
    module.layer_idx = 5
    seen = {}
    with observing(lambda idx, w: seen.update(idx=idx, weights=w)):
        out, weights = observed_attention(module, query, key, value, mask, scaling=0.5)
    expanded_k = key.repeat_interleave(q_heads // kv_heads, dim=1)
    expanded_v = value.repeat_interleave(q_heads // kv_heads, dim=1)
    ref_weights = torch.softmax(query @ expanded_k.transpose(-1, -2) * 0.5 + mask, dim=-1)
    torch.testing.assert_close(weights, ref_weights)
    torch.testing.assert_close(out, (ref_weights @ expanded_v).transpose(1, 2))
    assert seen["idx"] == 5 and seen["weights"].shape == (batch, kv_heads, 3, q_len, kv_len)
    # KV head 1 is shared by query heads 3, 4, 5
    torch.testing.assert_close(seen["weights"][:, 1], ref_weights[:, 3:6])


def tiny_llama(attn: str) -> torch.nn.Module:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=97,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
    )
    return AutoModelForCausalLM.from_config(config, attn_implementation=attn).eval()


@pytest.fixture(scope="module")
def tokens() -> torch.Tensor:
    return torch.randint(0, 97, (2, 40), generator=torch.Generator().manual_seed(1))


def test_full_policy_equals_the_models_own_cache(tokens: torch.Tensor) -> None:
    reference = streaming_nll(tiny_llama("sdpa"), tokens, DynamicCache())
    observed = tiny_llama(register_observed_attention())
    full = streaming_nll(observed, tokens, EvictingCache(2, make_policy("full", recent=0), budget=10**6))
    h2o_unbounded = streaming_nll(observed, tokens, EvictingCache(2, make_policy("h2o", recent=4), budget=40))
    assert full.nll == pytest.approx(reference.nll, abs=1e-5)
    assert h2o_unbounded.nll == pytest.approx(reference.nll, abs=1e-5)  # budget ≥ sequence: nothing evicted


def test_local_window_equals_banded_attention_so_positions_stay_right(tokens: torch.Tensor) -> None:
    """Local eviction with budget k lets each token see itself and the k previous ones: the same as a
    full forward with a banded mask. Any RoPE position mistake after eviction would break the match."""
    k, length = 5, tokens.shape[1]
    model = tiny_llama(register_observed_attention())
    cache = EvictingCache(2, make_policy("local", recent=k), budget=k)
    streamed = []
    with torch.no_grad(), observing(cache.observe):
        for t in range(length):
            streamed.append(model(tokens[:, t : t + 1], past_key_values=cache, use_cache=True).logits[:, -1])
    i, j = torch.arange(length)[:, None], torch.arange(length)[None]
    banded = torch.where((j <= i) & (j >= i - k), 0.0, float("-inf"))
    with torch.no_grad():
        full = model(tokens, attention_mask=banded.expand(tokens.shape[0], 1, -1, -1)).logits
    torch.testing.assert_close(torch.stack(streamed, dim=1), full, atol=1e-4, rtol=1e-4)
    assert cache.get_seq_length() == length and cache.layers[1].keys.shape == (2, 2, k, 8)


def test_eviction_really_shrinks_the_cache(tokens: torch.Tensor) -> None:
    model = tiny_llama(register_observed_attention())
    full, evicting = DynamicCache(), EvictingCache(2, make_policy("h2o", recent=4), budget=8)
    streaming_nll(model, tokens, full)
    result = streaming_nll(model, tokens, evicting)
    assert [layer.keys.shape[-2] for layer in evicting.layers] == [8, 8]
    assert result.kv_entries == 8
    # 9 slots (the budget plus the token being attended to) of 39 entries; each slot also holds a position
    # and a score (12 bytes) beside its 2 × 8 × 4 bytes of K and V
    assert kv_nbytes(evicting) / kv_nbytes(full) == pytest.approx(9 / 39 * (64 + 12) / 64, rel=1e-6)


def test_budgets_from_ratio_or_count() -> None:
    assert H2OConfig(policy="h2o", budget=0.2).budgets(1000) == (200, 100)
    assert H2OConfig(policy="local", budget=0.2).budgets(1000) == (200, 200)
    assert H2OConfig(policy="h2o", budget=64, heavy_fraction=0.25).budgets(1000) == (64, 48)
    with pytest.raises(ValueError, match=r"method\.budget=0 must be > 0"):
        H2OConfig(budget=0)
    with pytest.raises(ValueError, match="larger than the sequence"):
        H2OConfig(budget=5000, max_tokens=2048)
    with pytest.raises(ValueError, match=r"method\.policy='lru'.*full, h2o, local, streaming, random"):
        H2OConfig(policy="lru")


def test_request_scoring_equals_one_forward_and_streaming_through_the_cache() -> None:
    """The lm-eval path: Σ log p(continuation) from one pass over context + continuation; with the full
    cache it is the plain forward's, under a budget it is the sum that token-by-token streaming through
    the evicting cache gives (every query, the first continuation token's included, under the budget)."""
    from methods.h2o.lm_eval_tasks import score_request
    from methods.h2o.query_mask import Eviction, register_query_mask_attention

    model = tiny_llama(register_query_mask_attention())
    ids = torch.randint(0, 96, (1, 20), generator=torch.Generator().manual_seed(4))
    context, continuation = ids[0, :15].tolist(), ids[0, 15:].tolist()
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0, :-1], dim=-1)
    expected = logp[14:].gather(-1, ids[0, 15:, None]).sum().item()
    full, _ = score_request(model, context, continuation, None, limit=2048)
    assert full == pytest.approx(expected, abs=1e-4)

    evicted, _ = score_request(model, context, continuation, Eviction(make_policy("h2o", 2), 4), limit=2048)
    cache = EvictingCache(2, make_policy("h2o", 2), budget=4)
    with torch.no_grad(), observing(cache.observe):
        logits = torch.cat([model(ids[:, t : t + 1], past_key_values=cache).logits[0] for t in range(19)])
    streamed = torch.log_softmax(logits, dim=-1)[14:].gather(-1, ids[0, 15:, None]).sum().item()
    assert evicted == pytest.approx(streamed, abs=1e-4)
    assert evicted != pytest.approx(full, abs=1e-3)  # a 4-entry cache really changes the score
    # lm-eval's left truncation: only the last `limit` + 1 tokens count.
    short, _ = score_request(model, context, continuation, None, limit=8)
    with torch.no_grad():
        tail = torch.log_softmax(model(ids[:, 11:19]).logits[0], dim=-1)
    assert short == pytest.approx(tail[3:].gather(-1, ids[0, 15:, None]).sum().item(), abs=1e-4)
