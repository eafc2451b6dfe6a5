"""The chunked attention the evicting cache is fed by: the same column sums and outputs as the eager
matrix, on the three families H2O runs (Llama, OPT, GPT-NeoX), before and after an eviction; and a batch
of rows evicting independently, as batch-1 runs of each row do."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

import data.llm.attention as attention
from data.llm.attention import chunked_attention, observing, register_observed_attention
from data.llm.eviction import make_policy
from data.llm.kv_cache import EvictingCache
from tests.paper.standins import tiny_causal_lm


@pytest.fixture(scope="module", params=["llama", "opt", "gpt_neox"])
def tiny(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> torch.nn.Module:
    folder = tiny_causal_lm(tmp_path_factory.mktemp(request.param) / "model", request.param)
    model = AutoModelForCausalLM.from_pretrained(folder, attn_implementation=register_observed_attention())
    with torch.no_grad():  # sharper, token-dependent attention: rows then pick different heavy hitters
        for name, weight in model.named_parameters():
            if any(part in name for part in ("q_proj", "k_proj", "query_key_value")):
                weight *= 16
    return model.eval()


def test_chunked_attention_equals_the_eager_matrix_by_hand() -> None:
    """Blocks of 2 rows, a causal mask (so later blocks skip hidden keys), grouped-query heads."""
    torch.manual_seed(0)
    batch, q_heads, kv_heads, q_len, past, dim = 2, 6, 2, 7, 3, 4
    kv_len = past + q_len
    query = torch.randn(batch, q_heads, q_len, dim)
    key, value = torch.randn(batch, kv_heads, kv_len, dim), torch.randn(batch, kv_heads, kv_len, dim)
    i, j = torch.arange(q_len)[:, None], torch.arange(kv_len)[None]
    mask = torch.where(j <= past + i, 0.0, torch.finfo(torch.float32).min).expand(batch, 1, -1, -1)
    expanded_k = key.repeat_interleave(q_heads // kv_heads, dim=1)
    expanded_v = value.repeat_interleave(q_heads // kv_heads, dim=1)
    weights = torch.softmax(query @ expanded_k.transpose(-1, -2) * 0.5 + mask, dim=-1)
    ref_sums = weights.view(batch, kv_heads, -1, q_len, kv_len).sum(dim=(2, 3))
    old = attention.CHUNK_ELEMENTS
    try:
        attention.CHUNK_ELEMENTS = 2 * batch * q_heads * kv_len  # 2 query rows per block
        out, sums = chunked_attention(query, key, value, mask, 0.5)
    finally:
        attention.CHUNK_ELEMENTS = old
    torch.testing.assert_close(out, (weights @ expanded_v).transpose(1, 2), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(sums, ref_sums, atol=1e-5, rtol=1e-5)
    assert sums[:, :, -1].allclose(weights[..., -1:, -1].view(batch, kv_heads, -1).sum(-1))  # last key: 1 row


def run(model: torch.nn.Module, ids: torch.Tensor, cache: EvictingCache, eager: bool) -> list[torch.Tensor]:
    """Prefill 24 tokens, a 5-token chunk (after the prefill's eviction), then 3 single tokens; logits of
    each call. ``eager`` hands the cache the full weights (an unmarked observer), as before chunking."""
    observer = (lambda idx, w: cache.observe(idx, w)) if eager else cache.observe
    logits = []
    with torch.no_grad(), observing(observer):
        for lo, hi in [(0, 24), (24, 29), (29, 30), (30, 31), (31, 32)]:
            logits.append(model(ids[:, lo:hi], past_key_values=cache, use_cache=True).logits)
    return logits


def test_column_sums_match_the_eager_path_on_each_family(
    tiny: torch.nn.Module, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(attention, "CHUNK_ELEMENTS", 4 * 4 * 24)  # 4 query rows per block at prefill
    ids = torch.randint(4, 300, (1, 32), generator=torch.Generator().manual_seed(3))
    layers = tiny.config.num_hidden_layers
    caches = {e: EvictingCache(layers, make_policy("h2o", recent=4), budget=10) for e in (True, False)}
    logits = {e: run(tiny, ids, caches[e], e) for e in (True, False)}
    for a, b in zip(logits[True], logits[False], strict=True):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)
    for eager_layer, chunked_layer in zip(caches[True].layers, caches[False].layers, strict=True):
        assert torch.equal(chunked_layer.positions, eager_layer.positions)
        torch.testing.assert_close(chunked_layer.scores, eager_layer.scores, atol=1e-5, rtol=1e-5)
    assert caches[False].layers[0].keys.shape[2] == 10


def test_batched_cache_evicts_each_row_as_its_own_batch_one_run(tiny: torch.nn.Module) -> None:
    """Per-row heavy hitters: rows of one batch keep different entries, exactly those of a batch-1 run."""
    ids = torch.randint(4, 300, (3, 32), generator=torch.Generator().manual_seed(4))
    layers = tiny.config.num_hidden_layers

    def cache() -> EvictingCache:
        return EvictingCache(layers, make_policy("h2o", recent=4), budget=10)

    batched = cache()
    logits = run(tiny, ids, batched, eager=False)
    rows = []
    for r in range(ids.shape[0]):
        single = cache()
        row_logits = run(tiny, ids[r : r + 1], single, eager=False)
        for a, b in zip(logits, row_logits, strict=True):
            torch.testing.assert_close(a[r : r + 1], b, atol=1e-5, rtol=1e-5)
        for layer, row_layer in zip(batched.layers, single.layers, strict=True):
            order = layer.positions[r].argsort(-1)  # slots are unordered inside the buffer
            row_order = row_layer.positions[0].argsort(-1)
            assert torch.equal(
                layer.positions[r].gather(-1, order), row_layer.positions[0].gather(-1, row_order)
            )
            torch.testing.assert_close(
                layer.scores[r].gather(-1, order),
                row_layer.scores[0].gather(-1, row_order),
                atol=1e-5,
                rtol=1e-5,
            )
        rows.append(torch.stack([layer.positions[r].sort(-1).values for layer in batched.layers]))
    assert any(not torch.equal(rows[0], other) for other in rows[1:])  # the rows really differ


def test_position_only_policy_gets_no_scores_and_plain_sdpa(tiny: torch.nn.Module) -> None:
    """Streaming needs no scores: the attention hands it None (no score work), and decoding matches the
    eager path that computes (and ignores) them."""
    ids = torch.randint(4, 300, (1, 32), generator=torch.Generator().manual_seed(5))
    layers = tiny.config.num_hidden_layers
    caches = {
        e: EvictingCache(layers, make_policy("streaming", recent=4, sinks=2), budget=10) for e in (1, 0)
    }
    seen = []
    caches[0].layers[0].observe = lambda w, layer=caches[0].layers[0], f=caches[0].layers[0].observe: (
        seen.append(w),
        f(w),
    )
    logits = {e: run(tiny, ids, caches[e], bool(e)) for e in (1, 0)}
    for a, b in zip(logits[1], logits[0], strict=True):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)
    assert seen and all(w is None for w in seen)


def test_batch_select_keeps_chosen_rows_and_leaves_the_original(tiny: torch.nn.Module) -> None:
    """Selecting rows of an evicting cache gives the cache those rows alone would have; decoding the
    selection does not touch the original's buffers."""
    import copy

    ids = torch.randint(4, 300, (3, 32), generator=torch.Generator().manual_seed(6))
    layers = tiny.config.num_hidden_layers
    cache = EvictingCache(layers, make_policy("h2o", recent=4), budget=10)
    with torch.no_grad(), observing(cache.observe):
        tiny(ids[:, :24], past_key_values=cache, use_cache=True)
    before = [layer.keys.clone() for layer in cache.layers]
    picked = copy.copy(cache)
    picked.layers = [copy.copy(layer) for layer in cache.layers]
    picked.batch_select_indices(torch.tensor([2, 0]))
    with torch.no_grad(), observing(picked.observe):
        got = tiny(ids[[2, 0], 24:25], past_key_values=picked, use_cache=True).logits
    alone = EvictingCache(layers, make_policy("h2o", recent=4), budget=10)
    with torch.no_grad(), observing(alone.observe):
        tiny(ids[[2, 0], :24], past_key_values=alone, use_cache=True)
        want = tiny(ids[[2, 0], 24:25], past_key_values=alone, use_cache=True).logits
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    for layer, keys in zip(cache.layers, before, strict=True):
        assert torch.equal(layer.keys, keys) and layer.keys.shape[0] == 3


class HostSyncs(torch.overrides.TorchFunctionMode):
    """Counts the calls that copy a tensor's value to the host (each one a GPU sync on a GPU)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in (torch.Tensor.__bool__, torch.Tensor.item, torch.Tensor.tolist):
            self.count += 1
        return func(*args, **(kwargs or {}))


def eager_reference(query, key, value, mask, scaling):
    """The eager matrix with repeated KV heads: output [b, q, heads, d] and column sums [b, kv_heads, kv]."""
    groups = query.shape[1] // key.shape[1]
    weights = torch.softmax(query @ key.repeat_interleave(groups, 1).transpose(-1, -2) * scaling + mask, -1)
    out = (weights @ value.repeat_interleave(groups, 1)).transpose(1, 2)
    return out, weights.view(key.shape[0], key.shape[1], -1, *weights.shape[-2:]).sum(dim=(2, 3))


def causal_mask(batch: int, q_len: int, kv_len: int) -> torch.Tensor:
    i, j = torch.arange(q_len)[:, None], torch.arange(kv_len)[None]
    hidden = torch.finfo(torch.float32).min
    return torch.where(j <= kv_len - q_len + i, 0.0, hidden).expand(batch, 1, -1, -1).clone()


def test_causal_tail_is_checked_once_per_mask_not_per_block(monkeypatch: pytest.MonkeyPatch) -> None:
    """Eight blocks of query rows, one host sync for the mask's shape; a second layer handed the same mask
    tensor reuses the answer; an in-place change to the mask is seen (checked again, eager result)."""
    torch.manual_seed(1)
    batch, q_heads, kv_heads, q_len, past, dim = 2, 4, 2, 16, 3, 8
    query = torch.randn(batch, q_heads, q_len, dim)
    key, value = (
        torch.randn(batch, kv_heads, past + q_len, dim),
        torch.randn(batch, kv_heads, past + q_len, dim),
    )
    mask = causal_mask(batch, q_len, past + q_len)
    monkeypatch.setattr(attention, "CHUNK_ELEMENTS", 2 * batch * q_heads * (past + q_len))  # 2 rows/block
    for syncs_wanted in (1, 0):  # first layer checks, the next reuses
        with HostSyncs() as syncs:
            out, sums = chunked_attention(query, key, value, mask, 0.3)
        assert syncs.count == syncs_wanted
        ref_out, ref_sums = eager_reference(query, key, value, mask, 0.3)
        torch.testing.assert_close(out, ref_out, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(sums, ref_sums, atol=1e-5, rtol=1e-5)
    mask[1, :, :, 0] = torch.finfo(torch.float32).min  # row 1 now pads its first key: no longer pure
    with HostSyncs() as syncs:
        out, sums = chunked_attention(query, key, value, mask, 0.3)
    assert syncs.count == 1
    ref_out, ref_sums = eager_reference(query, key, value, mask, 0.3)
    torch.testing.assert_close(out, ref_out, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(sums, ref_sums, atol=1e-5, rtol=1e-5)
    assert float(sums[1, :, 0].abs().max()) == 0.0  # the padded key received nothing


@pytest.mark.parametrize("kind", ["causal", "padded", "bias", "bool", "not causal", "none"])
@pytest.mark.parametrize("rows_per_block", [2, 0])  # 0: the whole call in one block (a decode step)
def test_every_mask_kind_gives_the_eager_result(kind: str, rows_per_block: int) -> None:
    """Only a purely causal mask (0 up to the diagonal) lets a block add just its diagonal tile; padding,
    an additive bias, a boolean mask, a non-causal mask and no mask must all still give the eager result."""
    torch.manual_seed(2)
    batch, q_heads, kv_heads, q_len, past, dim = 2, 6, 3, 9 if rows_per_block else 1, 4, 8
    kv_len = past + q_len
    query = torch.randn(batch, q_heads, q_len, dim)
    key, value = torch.randn(batch, kv_heads, kv_len, dim), torch.randn(batch, kv_heads, kv_len, dim)
    mask = causal_mask(batch, q_len, kv_len)
    if kind == "padded":
        mask[0, :, :, :2] = torch.finfo(torch.float32).min
    elif kind == "bias":
        mask = mask + torch.linspace(-2.0, 0.0, kv_len)  # visible keys get a nonzero additive bias
    elif kind == "not causal":
        mask = torch.zeros(batch, 1, q_len, kv_len)
        mask[1, :, 0, -1] = torch.finfo(torch.float32).min  # hides one key in row 0 only
    reference_mask = torch.zeros(batch, 1, q_len, kv_len) if kind == "none" else mask
    given = {"bool": mask == 0, "none": None}.get(kind, mask)
    old = attention.CHUNK_ELEMENTS
    try:
        if rows_per_block:
            attention.CHUNK_ELEMENTS = rows_per_block * batch * q_heads * kv_len
        out, sums = chunked_attention(query, key, value, given, 0.4)
    finally:
        attention.CHUNK_ELEMENTS = old
    ref_out, ref_sums = eager_reference(query, key, value, reference_mask, 0.4)
    torch.testing.assert_close(out, ref_out, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(sums, ref_sums, atol=1e-5, rtol=1e-5)
