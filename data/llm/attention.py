"""Eager attention that shows its softmax weights to an observer (a KV cache that scores tokens).

transformers does not hand attention weights to the cache, so methods that score cached tokens by the
attention they receive (H2O) register this function as an attention implementation. It is the eager
computation with grouped-query attention done by reshaping the queries instead of repeating the keys,
and it reports weights per KV head: [batch, kv_heads, query_heads_per_kv, q_len, kv_len].
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


def observed_attention(
    module: torch.nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[Tensor, Tensor]:
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
    observer = _observer.get()
    if observer is not None:
        observer(module.layer_idx, weights)
    return out, weights.view(batch, q_heads, q_len, kv_len)


def register_observed_attention() -> str:
    """Make ``attn_implementation="reprolab_observed"`` available to every transformers model."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    AttentionInterface.register(OBSERVED_ATTENTION, observed_attention)
    AttentionMaskInterface.register(OBSERVED_ATTENTION, eager_mask)
    return OBSERVED_ATTENTION
