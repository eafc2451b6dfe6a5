"""Eager attention that shows its softmax weights to an observer (a KV cache that scores tokens).

transformers does not hand attention weights to the cache, so methods that score cached tokens by the
attention they receive (H2O) register this function as an attention implementation. It is the eager
computation with grouped-query attention done by reshaping the queries instead of repeating the keys,
and it reports weights per KV head: [batch, kv_heads, query_heads_per_kv, q_len, kv_len].

An observer that only needs what each key received (``EvictingCache.observe``, marked with
``column_sum_observer``) gets column sums [batch, kv_heads, kv_len] instead: the attention is then
computed in blocks of query rows (``chunked_attention``), so the full fp32 matrix of a long prefill is
never materialised, and the blocks skip the keys the causal mask hides from all their rows (the mask's
shape is checked once per mask tensor, so one host sync per forward, not one per block and layer). A
decode step is one block and runs with no block bookkeeping.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import torch
from torch import Tensor

OBSERVED_ATTENTION = "reprolab_observed"
_observer: ContextVar[Callable[[int, Tensor], None] | None] = ContextVar("attention_observer", default=None)
CHUNK_ELEMENTS = 2**21  # scores per block of query rows (8 MiB in fp32): cache-sized, few Python steps
_causal_memo: tuple[weakref.ref, tuple, tuple[bool, bool]] | None = None  # last mask _causal_shape saw


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


def _causal_shape(attention_mask: Tensor, mask: Tensor, past: int) -> tuple[bool, bool]:
    """For ``mask`` [.., q_len, kv_len]: whether it hides from every query row i all keys after
    ``past + i`` (causal), and whether it is also 0 up to there (purely causal: no padding, no bias).

    One check (one host sync) per mask: transformers builds the mask once per forward and hands the
    same tensor to every layer, so the answer is kept for that tensor (by identity and version, so an
    in-place change is seen) and the other layers reuse it."""
    global _causal_memo
    key = (attention_mask._version, tuple(mask.shape), past)
    if _causal_memo is not None and _causal_memo[0]() is attention_mask and _causal_memo[1] == key:
        return _causal_memo[2]
    visible = mask if not mask.is_floating_point() else mask > torch.finfo(mask.dtype).min / 2
    nonzero = visible.logical_not() if not mask.is_floating_point() else mask != 0
    future, left = torch.stack(
        [torch.triu(visible, past + 1).any(), torch.tril(nonzero, past).any()]
    ).tolist()
    causal, pure = not future, not future and not left
    _causal_memo = (weakref.ref(attention_mask), key, (causal, pure))
    return causal, pure


def chunked_attention(
    query: Tensor, key: Tensor, value: Tensor, attention_mask: Tensor | None, scaling: float
) -> tuple[Tensor, Tensor]:
    """Exact softmax attention in blocks of query rows; the output [batch, q_len, q_heads, head_dim] and
    the column sums [batch, kv_heads, kv_len] (fp32) of the softmax weights.

    Each block holds its rows' full score rows, so its softmax (row normaliser = logsumexp over the
    visible keys) is the eager one; the output and the column sums come from the same probabilities.
    Grouped-query heads share their KV head by reshaping the queries (no repeated keys). Where the mask
    hides every key after ``past + row`` (checked once per mask, not assumed) each block stops at its
    last row's causal end, which halves a prefill's work. With no mask nothing is skipped, as in eager
    attention. A call that fits one block (every decode step) runs without the block bookkeeping."""
    batch, q_heads, q_len, head_dim = query.shape
    kv_heads, kv_len = key.shape[1], key.shape[2]
    groups, dv = q_heads // kv_heads, value.shape[-1]
    q = query.view(batch, kv_heads, groups, q_len, head_dim)
    mask = None if attention_mask is None else _mask_for_keys(attention_mask, kv_len)
    if mask is not None and not mask.is_floating_point():  # boolean: True = attend
        mask = torch.zeros(mask.shape, dtype=query.dtype, device=mask.device).masked_fill_(
            ~mask, torch.finfo(query.dtype).min
        )
    rows = max(1, CHUNK_ELEMENTS // max(1, batch * q_heads * kv_len))
    if rows >= q_len:  # one block: decoding, short prompts
        scores = torch.matmul(q.reshape(batch, kv_heads, groups * q_len, head_dim), key.transpose(-1, -2))
        scores.mul_(scaling)
        if mask is not None:
            scores.view(batch, kv_heads, groups, q_len, kv_len).add_(mask[:, :, None])
        weights = torch.softmax(scores, dim=-1, dtype=torch.float32)
        out = torch.matmul(weights.to(value.dtype), value).view(batch, q_heads, q_len, dv)
        return out.transpose(1, 2).contiguous(), weights.sum(dim=2)
    past = kv_len - q_len
    causal, pure = (False, False) if mask is None else _causal_shape(attention_mask, mask, past)
    out = query.new_empty(batch, kv_heads, groups, q_len, dv)
    sums = torch.zeros(batch, kv_heads, kv_len, dtype=torch.float32, device=query.device)
    for r0 in range(0, q_len, rows):
        r1 = min(q_len, r0 + rows)
        hi = past + r1 if causal else kv_len
        n = (r1 - r0) * groups
        qb = q[:, :, :, r0:r1].reshape(batch, kv_heads, n, head_dim)
        scores = torch.matmul(qb, key[:, :, :hi].transpose(-1, -2))  # [batch, kv_heads, groups*rows, hi]
        scores.mul_(scaling)
        if mask is not None:  # a purely causal mask is 0 left of the block's diagonal tile: add the tile
            lo = past + r0 if pure else 0
            scores.view(batch, kv_heads, groups, r1 - r0, hi)[..., lo:].add_(mask[:, :, None, r0:r1, lo:hi])
        weights = torch.softmax(scores, dim=-1, dtype=torch.float32)
        sums[..., :hi] += weights.sum(dim=2)
        out[:, :, :, r0:r1] = torch.matmul(weights.to(value.dtype), value[:, :, :hi]).view(
            batch, kv_heads, groups, -1, dv
        )
    return out.view(batch, q_heads, q_len, dv).transpose(1, 2).contiguous(), sums


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
