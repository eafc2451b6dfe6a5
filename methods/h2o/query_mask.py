"""KV-cache eviction as a per-query attention mask, so a whole lm-eval request runs in one forward pass.

The paper's accuracy-vs-budget results restrict *every* query of a request (context and continuation) to
the entries a budgeted cache holds when that query arrives. Streaming the request token by token through
``data.llm.kv_cache.EvictingCache`` does exactly that but costs one model call per token. Here each layer
replays the same cache, one query at a time, on the request's attention scores (paper Alg. 1: attend over
S ∪ {t}, add the softmax each kept key receives to its score, evict down to the budget with the policy's
priority), records which keys each query saw, and then attends once with that mask. Layer l's inputs are
the outputs of layers < l under the same masks, so the logits equal token-by-token streaming (up to float
rounding; tests/test_h2o_query_mask.py checks 1e-5 for h2o, local and streaming). ``random`` draws its
noise in another order (layer by layer, not token by token), so it matches streaming in distribution only.
``local`` and ``streaming`` rank by position alone and need no replay: their masks have a closed form.

The official lm-eval simulation (FMInference/H2O h2o_hf/utils_lm_eval/modify_opt.py,
``local_heavy_hitter_mask`` and the attention forward below it) also masks per query in one pass, but
differs from the paper: it ranks heavy hitters by the softmax of the *unmasked* causal row, keeps the top
heavy − 1 keys plus the query itself, adds a band of the ``recent`` previous keys, and zeroes the score of
every key outside the heavy set each step. We follow the paper by default; ``OfficialMask``
(``method.mask=official``) reproduces the official mask.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from data.llm.attention import _mask_for_keys, observed_attention
from data.llm.eviction import EvictionPolicy, LayerEntries, Local, Streaming

QUERY_MASK_ATTENTION = "reprolab_query_mask"


@dataclass(frozen=True)
class Eviction:
    """What the replayed cache keeps: the policy (shared by all layers, as one EvictingCache) and the
    number of entries per layer and KV head."""

    policy: EvictionPolicy
    budget: int

    def visible(self, scores: Tensor, dtype: torch.dtype) -> Tensor:
        return visible_keys(scores, self, dtype)


@dataclass(frozen=True)
class OfficialMask:
    """The official lm-eval mask (h2o_hf/utils_lm_eval/modify_opt.py): ``heavy`` = int(heavy_ratio ×
    length) and ``recent`` = int(recent_ratio × length) of the whole request."""

    heavy: int
    recent: int

    def visible(self, scores: Tensor, dtype: torch.dtype) -> Tensor:
        return official_visible_keys(scores, self.heavy, self.recent)


_active: ContextVar[Eviction | OfficialMask | None] = ContextVar("query_mask_eviction", default=None)


@contextmanager
def evicting(eviction: Eviction | OfficialMask) -> Iterator[None]:
    """Within this block, the query-mask attention restricts each query to what ``eviction`` keeps."""
    token = _active.set(eviction)
    try:
        yield
    finally:
        _active.reset(token)


@torch.no_grad()
def visible_keys(scores: Tensor, eviction: Eviction, dtype: torch.dtype | None = None) -> Tensor:
    """Which keys each query of one layer sees, bool [batch, kv_heads, T, T]: the closed form where the
    policy has one, else the replayed cache."""
    batch, heads, _, length, _ = scores.shape
    closed = closed_form(eviction.policy, eviction.budget, length, scores.device)
    if closed is not None:
        return closed.expand(batch, heads, length, length)
    return replayed_keys(scores, eviction, dtype)


@torch.no_grad()
def replayed_keys(scores: Tensor, eviction: Eviction, dtype: torch.dtype | None = None) -> Tensor:
    """Replay the evicting cache over one layer's causal ``scores`` [batch, kv_heads, groups, T, T]
    (query heads grouped per KV head, the causal mask already added). Returns bool [batch, kv_heads, T, T]:
    whether query t attends to key j.

    Mirrors ``EvictingLayer`` slot by slot (a new entry takes the next slot; an evicted slot takes the
    newest entry), so priorities and their ties are those of the real cache. ``dtype``: the precision the
    attention weights have before they are summed into the scores (the model's, as in the real cache).
    """
    batch, heads, groups, length, _ = scores.shape
    policy, budget = eviction.policy, eviction.budget
    capacity = min(budget + 1, length)
    positions = torch.zeros(batch, heads, capacity, dtype=torch.long, device=scores.device)
    accumulated = torch.zeros(batch, heads, capacity, dtype=torch.float32, device=scores.device)
    visible = torch.zeros(batch, heads, length, length, dtype=torch.bool, device=scores.device)
    stored = 0
    for t in range(length):
        positions[:, :, stored] = t
        accumulated[:, :, stored] = 0.0
        stored += 1
        kept = positions[:, :, :stored]
        visible[:, :, t].scatter_(-1, kept, True)
        if policy.needs_scores:  # Alg. 1 step 2: each kept key gains the softmax attention it receives
            row = scores[:, :, :, t].gather(-1, kept[:, :, None].expand(-1, -1, groups, -1))
            weights = torch.softmax(row, dim=-1, dtype=torch.float32).to(dtype or scores.dtype)
            accumulated[:, :, :stored] += weights.sum(dim=2, dtype=torch.float32)
        if stored > budget:  # Alg. 1 step 3: evict the lowest-priority entry for good
            entries = LayerEntries(kept, accumulated[:, :, :stored], t + 1)
            victim = policy.priority(entries).argmin(dim=-1, keepdim=True)
            last = stored - 1
            for buffer in (positions, accumulated):
                buffer.scatter_(2, victim, buffer[:, :, last : last + 1].clone())
            stored = last
    return visible


def closed_form(policy: EvictionPolicy, budget: int, length: int, device: torch.device) -> Tensor | None:
    """local and streaming rank by position alone, so their replay has a closed form [T, T]: query t sees
    keys t - budget .. t (local), or the sinks and keys t - (budget - sinks) .. t (streaming). None for
    policies that rank by scores or chance."""
    t = torch.arange(length, device=device)
    back = t[:, None] - t[None, :]  # how far key j lies behind query t
    if isinstance(policy, Local):
        return (back >= 0) & (back <= budget)
    if isinstance(policy, Streaming) and budget > policy.sinks:
        return (back >= 0) & ((back <= budget - policy.sinks) | (t[None, :] < policy.sinks))
    return None


@torch.no_grad()
def official_visible_keys(scores: Tensor, heavy: int, recent: int) -> Tensor:
    """The official code's mask over causal ``scores`` [batch, kv_heads, groups, T, T] (its MHA models:
    groups = 1; grouped query heads are summed per KV head). Bool [batch, kv_heads, T, T]."""
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).sum(dim=2)  # full causal rows
    batch, heads, length, _ = probs.shape
    visible = torch.zeros(batch, heads, length, length, dtype=torch.bool, device=scores.device)
    if heavy > 0:
        # the first `heavy` queries attend causally among themselves; their column sums seed the scores
        accumulated = probs[:, :, :heavy].sum(dim=-2)
        accumulated[..., heavy:] = 0
        visible[:, :, :heavy, :heavy] = True
        for t in range(heavy, length):
            top = accumulated.topk(k=heavy - 1, dim=-1).indices
            row = torch.zeros_like(accumulated, dtype=torch.bool).scatter(-1, top, True)
            row[..., t] = True
            visible[:, :, t] = row
            accumulated = (accumulated + probs[:, :, t]) * row  # keys outside the heavy set lose their score
    ones = torch.ones(length, length, dtype=torch.bool, device=scores.device)
    visible |= ones.triu(diagonal=-recent)  # the recent band: keys t - recent .. t
    return visible & ones.tril()


def query_mask_attention(
    module: torch.nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[Tensor, Tensor]:
    """Eager attention; inside ``evicting(...)`` each query sees only what the replayed cache keeps.
    Outside it, exactly ``data.llm.attention.observed_attention`` (the full cache and cache-based paths)."""
    eviction = _active.get()
    if eviction is None:
        return observed_attention(module, query, key, value, attention_mask, scaling, dropout, **kwargs)
    batch, q_heads, length, head_dim = query.shape
    kv_heads = key.shape[1]
    if key.shape[2] != length:
        raise ValueError(
            f"query-mask eviction runs a whole request in one pass without a cache ({length} queries, "
            f"{key.shape[2]} keys)"
        )
    groups = q_heads // kv_heads  # query heads i*groups .. (i+1)*groups-1 share KV head i
    q = query.reshape(batch, kv_heads, groups * length, head_dim)
    scores = (q @ key.transpose(-1, -2) * scaling).view(batch, kv_heads, groups, length, length)
    if attention_mask is not None:
        scores = scores + _mask_for_keys(attention_mask, length)[:, :, None]
    visible = eviction.visible(scores, query.dtype)
    scores = scores.masked_fill(~visible[:, :, None], float("-inf"))  # every query sees itself
    weights = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    weights = torch.nn.functional.dropout(weights, p=dropout, training=module.training)
    out = weights.view(batch, kv_heads, groups * length, length) @ value
    out = out.view(batch, q_heads, length, head_dim).transpose(1, 2).contiguous()
    return out, weights.view(batch, q_heads, length, length)


def register_query_mask_attention() -> str:
    """Make ``attn_implementation="reprolab_query_mask"`` available to every transformers model."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    AttentionInterface.register(QUERY_MASK_ATTENTION, query_mask_attention)
    AttentionMaskInterface.register(QUERY_MASK_ATTENTION, eager_mask)
    return QUERY_MASK_ATTENTION
