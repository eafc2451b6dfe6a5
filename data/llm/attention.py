"""Eager attention that shows its softmax weights to an observer (a KV cache that scores tokens).

transformers does not hand attention weights to the cache, so methods that score cached tokens by the
attention they receive (H2O) register this function as an attention implementation. It is the eager
computation with grouped-query attention done by reshaping the queries instead of repeating the keys,
and it reports weights per KV head: [batch, kv_heads, query_heads_per_kv, q_len, kv_len].

An observer that only needs what each key received (``EvictingCache.observe``, marked with
``column_sum_observer``) gets column sums [batch, kv_heads, kv_len] instead: the attention is then
computed in blocks of query rows (``chunked_attention``), so the full fp32 matrix of a long prefill is
never materialised, and the blocks skip the keys the causal mask hides from all their rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import torch
from torch import Tensor

OBSERVED_ATTENTION = "reprolab_observed"
_observer: ContextVar[Callable[[int, Tensor], None] | None] = ContextVar("attention_observer", default=None)
CHUNK_ELEMENTS = 2**21  # scores per block of query rows (8 MiB in fp32): cache-sized, few Python steps


def column_sum_observer(fn: Callable) -> Callable:
    """Mark an observer as wanting column sums [batch, kv_heads, kv_len] (attention each key received,
    summed over a KV head's query heads and this call's queries) instead of the full weights. Its bound
    methods inherit the mark; their object may say ``needs_scores = False`` to skip the sums."""
    fn.wants_column_sums = True
    return fn


@contextmanager
def observing(observer: Callable[[int, Tensor], None]) -> Iterator[None]:
    """Within this block every observed-attention call reports ``observer(layer_idx, weights)``."""
    token = _observer.set(observer)
    try:
        yield
    finally:
        _observer.reset(token)


def _mask_for_keys(attention_mask: Tensor, kv_len: int) -> Tensor:
    """The mask's columns for the ``kv_len`` keys this call attends to, aligned at the right.

    The keys are the kept cache entries followed by this call's ``q_len`` new tokens, so the new tokens
    are always the last ``q_len`` columns. Models that size the mask with the cache's ``get_mask_sizes``
    (Llama family, GPT-NeoX) give exactly ``kv_len`` columns. OPT (transformers 4.57,
    ``OPTDecoder._update_causal_mask``) ignores it and gives one column per token *seen* plus the new
    ones; its causal part sits in the last columns, so keeping the first ``kv_len`` columns after an
    eviction would let a multi-token chunk see its own later tokens. Right-aligned, every kept entry
    (all older than this call's queries) is visible and the new tokens are causal, for every family.
    Padding is not mapped to evicted positions: callers feed unpadded rows (every H2O path does).
    """
    width = attention_mask.shape[-1]
    if width < kv_len:
        raise ValueError(f"attention mask has {width} key columns for {kv_len} keys")
    return attention_mask[..., width - kv_len :]


def chunked_attention(
    query: Tensor, key: Tensor, value: Tensor, attention_mask: Tensor | None, scaling: float
) -> tuple[Tensor, Tensor]:
    """Exact softmax attention in blocks of query rows; the output [batch, q_len, q_heads, head_dim] and
    the column sums [batch, kv_heads, kv_len] (fp32) of the softmax weights.

    Each block holds its rows' full score rows, so its softmax (row normaliser = logsumexp over the
    visible keys) is the eager one. Keys after ``past + last row`` are hidden from every row of the block
    by a causal mask; where the mask says so (checked, not assumed) the block stops there, which halves a
    prefill's work. With no mask nothing is skipped, as in eager attention."""
    batch, q_heads, q_len, head_dim = query.shape
    kv_heads, kv_len = key.shape[1], key.shape[2]
    groups = q_heads // kv_heads
    q = query.view(batch, kv_heads, groups, q_len, head_dim)
    mask = None if attention_mask is None else _mask_for_keys(attention_mask, kv_len)
    hidden = torch.finfo(mask.dtype).min / 2 if mask is not None and mask.is_floating_point() else None
    out = query.new_empty(batch, kv_heads, groups, q_len, value.shape[-1])
    sums = torch.zeros(batch, kv_heads, kv_len, dtype=torch.float32, device=query.device)
    rows = max(1, CHUNK_ELEMENTS // max(1, batch * q_heads * kv_len))
    past = kv_len - q_len
    for r0 in range(0, q_len, rows):
        r1 = min(q_len, r0 + rows)
        block_mask = None if mask is None else mask[:, :, r0:r1]
        hi = kv_len
        if block_mask is not None:
            causal_end = past + r1
            if causal_end < kv_len:
                tail = block_mask[..., causal_end:]
                if bool((~tail).all()) if hidden is None else bool((tail <= hidden).all()):
                    hi = causal_end
            block_mask = block_mask[..., :hi]
        n = (r1 - r0) * groups
        qb = q[:, :, :, r0:r1].reshape(batch, kv_heads, n, head_dim)
        scores = (qb @ key[:, :, :hi].transpose(-1, -2)) * scaling  # [batch, kv_heads, groups*rows, hi]
        if block_mask is not None:
            if not block_mask.is_floating_point():  # boolean: True = attend
                block_mask = torch.zeros_like(block_mask, dtype=scores.dtype).masked_fill(
                    ~block_mask, torch.finfo(scores.dtype).min
                )
            scores = scores.view(batch, kv_heads, groups, r1 - r0, hi) + block_mask[:, :, None]
        weights = torch.softmax(scores.view(batch, kv_heads, n, hi), dim=-1, dtype=torch.float32)
        sums[..., :hi] += weights.sum(dim=2)
        out[:, :, :, r0:r1] = (weights.to(value.dtype) @ value[:, :, :hi]).view(
            batch, kv_heads, groups, -1, head_dim
        )
    return out.view(batch, q_heads, q_len, -1).transpose(1, 2).contiguous(), sums


def observed_attention(
    module: torch.nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[Tensor, Tensor | None]:
    """Eager attention reporting its weights to the observer; for a column-sum observer (and no dropout),
    ``chunked_attention``, whose weights are not returned (None, as sdpa does)."""
    observer = _observer.get()
    if (
        observer is not None
        and getattr(observer, "wants_column_sums", False)
        and (dropout == 0.0 or not module.training)
    ):
        if not getattr(getattr(observer, "__self__", None), "needs_scores", True):
            out = _sdpa(query, key, value, attention_mask, scaling)
            observer(module.layer_idx, None)
            return out, None
        out, sums = chunked_attention(query, key, value, attention_mask, scaling)
        observer(module.layer_idx, sums)
        return out, None
    batch, q_heads, q_len, head_dim = query.shape
    kv_heads, kv_len = key.shape[1], key.shape[2]
    groups = q_heads // kv_heads  # query heads i*groups .. (i+1)*groups-1 share KV head i
    q = query.reshape(batch, kv_heads, groups * q_len, head_dim)
    scores = (q @ key.transpose(-1, -2) * scaling).view(batch, kv_heads, groups, q_len, kv_len)
    if attention_mask is not None:
        scores = scores + _mask_for_keys(attention_mask, kv_len)[:, :, None]
    weights = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    weights = torch.nn.functional.dropout(weights, p=dropout, training=module.training)
    out = weights.view(batch, kv_heads, groups * q_len, kv_len) @ value
    out = out.view(batch, q_heads, q_len, head_dim).transpose(1, 2).contiguous()
    if observer is not None:
        observer(module.layer_idx, weights)
    return out, weights.view(batch, q_heads, q_len, kv_len)


def _sdpa(query: Tensor, key: Tensor, value: Tensor, attention_mask: Tensor | None, scaling: float) -> Tensor:
    """Plain SDPA (grouped-query heads shared), for observers that need no scores; [b, q_len, heads, d]."""
    mask = None if attention_mask is None else _mask_for_keys(attention_mask, key.shape[2])
    out = torch.nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=mask, scale=scaling, enable_gqa=query.shape[1] != key.shape[1]
    )
    return out.transpose(1, 2).contiguous()


def register_observed_attention() -> str:
    """Make ``attn_implementation="reprolab_observed"`` available to every transformers model."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    AttentionInterface.register(OBSERVED_ATTENTION, observed_attention)
    AttentionMaskInterface.register(OBSERVED_ATTENTION, eager_mask)
    return OBSERVED_ATTENTION
