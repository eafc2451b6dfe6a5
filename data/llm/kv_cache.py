"""A KV cache for transformers (4.57 line) that really drops entries, per layer and per KV head.

Each layer keeps, beside keys and values, every entry's absolute position and the softmax attention it
has accumulated (fed by ``data.llm.attention.observed_attention``, as column sums: the cache's ``observe``
is a ``column_sum_observer``, so a prefill never builds the full attention matrix). After each
attention call the layer evicts down to its budget with an ``EvictionPolicy``; the tensors shrink, so
memory follows the budget.

Positions stay correct under eviction: ``get_seq_length`` reports the tokens *seen* (so new tokens get
the right RoPE positions; cached keys keep the rotation they were written with) and ``get_mask_sizes``
offsets the causal mask by the number of evicted entries. OPT ignores ``get_mask_sizes`` and builds a
mask one column per token seen; ``data.llm.attention`` aligns any mask to the keys from the right.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from transformers.cache_utils import Cache, DynamicLayer

from data.llm.attention import column_sum_observer
from data.llm.eviction import EvictionPolicy, LayerEntries


class EvictingLayer(DynamicLayer):
    """Keys, values, positions and scores live in buffers of ``budget + 1`` entries (room for the token
    being attended to). In steady decoding one entry leaves per step: the newest entry moves into the
    evicted slot, so a step costs O(1) copies instead of re-gathering (or re-concatenating) the cache.
    ``keys``/``values`` are views of the filled part; order inside the buffer carries no meaning. The
    views of each filled length are made once per set of buffers (steady decoding alternates between
    two lengths), not twice per step."""

    def __init__(self, policy: EvictionPolicy, budget: int) -> None:
        super().__init__()
        self.policy, self.budget, self.seen, self.stored = policy, budget, 0, 0

    def lazy_initialization(self, key_states: Tensor) -> None:
        self.dtype, self.device = key_states.dtype, key_states.device
        self._shape = (key_states.shape[0], key_states.shape[1])
        self._dim = key_states.shape[-1]
        self._resize(0)
        self.is_initialized = True

    def _resize(self, capacity: int) -> None:
        """New buffers of ``capacity`` entries holding the ``stored`` entries of the old ones."""
        old = self._buffers() if hasattr(self, "_k") else ()
        k = torch.zeros(*self._shape, capacity, self._dim, dtype=self.dtype, device=self.device)
        new = (
            k,
            torch.zeros_like(k),
            torch.zeros(*self._shape, capacity, dtype=torch.long, device=self.device),
            torch.zeros(*self._shape, capacity, dtype=torch.float32, device=self.device),
        )
        for fresh, previous in zip(new, old, strict=False):
            fresh[:, :, : self.stored] = previous[:, :, : self.stored]
        self._k, self._v, self._pos, self._score = new
        self._view_memo: dict[int, tuple[Tensor, ...]] = {}  # a fresh dict: copies keep their own
        self._views()

    def _buffers(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        return self._k, self._v, self._pos, self._score

    def _views(self) -> None:
        views = self._view_memo.get(self.stored)
        if views is None:
            views = self._view_memo[self.stored] = tuple(b[:, :, : self.stored] for b in self._buffers())
        self.keys, self.values, self.positions, self.scores = views

    def update(
        self, key_states: Tensor, value_states: Tensor, cache_kwargs: dict[str, Any] | None = None
    ) -> tuple[Tensor, Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states)
        new = key_states.shape[2]
        end = self.stored + new
        if end > self._k.shape[2]:  # grow: doubling, but never past budget + 1 once decoding
            self._resize(max(end, min(self.budget + 1, 2 * self._k.shape[2])))
        self._k[:, :, self.stored : end] = key_states
        self._v[:, :, self.stored : end] = value_states
        if new == 1:  # decoding: no arange to build
            self._pos[:, :, self.stored].fill_(self.seen)
        else:
            self._pos[:, :, self.stored : end] = torch.arange(self.seen, self.seen + new, device=self.device)
        self._score[:, :, self.stored : end].zero_()
        self.stored, self.seen = end, self.seen + new
        self._views()
        return self.keys, self.values

    def observe(self, weights: Tensor | None) -> None:
        """Accumulate the attention each entry received (summed over a KV head's query heads and over
        the queries of this call: column sums at prefill), then evict down to the budget. ``weights`` are
        the softmax weights [batch, kv_heads, groups, q_len, kv_len], or already their column sums
        [batch, kv_heads, kv_len], or None for a policy that needs no scores."""
        if self.policy.needs_scores:
            if weights is None:
                raise ValueError(f"the {type(self.policy).__name__} policy needs attention scores, got None")
            self.scores += weights if weights.dim() == 3 else weights.sum(dim=(2, 3), dtype=torch.float32)
        excess = self.stored - self.budget
        if excess == 1:
            self._evict_one()
        elif excess > 1:
            self._compress()
        self._views()

    def _evict_one(self) -> None:
        """Steady decoding: per (batch, head) the lowest-priority entry's slot takes the newest entry."""
        entries = LayerEntries(self.positions, self.scores, self.seen)
        victim = self.policy.priority(entries).argmin(dim=-1, keepdim=True)  # [batch, heads, 1]
        last = self.stored - 1
        wide = victim[..., None].expand(-1, -1, 1, self._dim)  # one index for keys and values
        for buffer, index in zip(self._buffers(), (wide, wide, victim, victim), strict=True):
            buffer.scatter_(2, index, buffer[:, :, last : last + 1].clone())
        self.stored = last

    def _compress(self) -> None:
        """After a prefill (or any multi-token step): keep the budget's best entries, in order."""
        keep = self.policy.keep(LayerEntries(self.positions, self.scores, self.seen), self.budget)
        kept = []
        for buffer in self._buffers():
            index = keep if buffer.dim() == 3 else keep[..., None].expand(-1, -1, -1, buffer.shape[-1])
            kept.append(buffer[:, :, : self.stored].gather(2, index))
        self.stored = 0
        self._resize(self.budget + 1)
        for buffer, values in zip(self._buffers(), kept, strict=True):
            buffer[:, :, : self.budget] = values
        self.stored = self.budget

    def batch_select_indices(self, indices: Tensor) -> None:
        """Keep rows ``indices`` of the batch (transformers' contrastive search; batched benchmarks), as
        fresh buffers: a shallow copy of this layer that selects leaves the original's buffers intact."""
        if self.is_initialized:
            self._k, self._v, self._pos, self._score = (buffer[indices] for buffer in self._buffers())
            self._shape = (self._k.shape[0], self._k.shape[1])
            self._view_memo = {}
            self._views()

    def get_seq_length(self) -> int:
        return self.seen

    def get_mask_sizes(self, cache_position: Tensor) -> tuple[int, int]:
        return self.stored + cache_position.shape[0], self.seen - self.stored

    def nbytes(self) -> int:
        """Bytes held: the key, value, position and score buffers (capacity, not just the filled part)."""
        if not self.is_initialized:
            return 0
        return sum(t.numel() * t.element_size() for t in self._buffers())


class EvictingCache(Cache):
    """One ``EvictingLayer`` per decoder layer; ``observe`` is the hook the attention function calls."""

    def __init__(self, num_layers: int, policy: EvictionPolicy, budget: int) -> None:
        super().__init__(layers=[EvictingLayer(policy, budget) for _ in range(num_layers)])
        self.policy, self.budget = policy, budget

    @property
    def needs_scores(self) -> bool:
        """Whether attention must compute scores for this cache (else plain SDPA serves it)."""
        return self.policy.needs_scores

    @column_sum_observer
    def observe(self, layer_idx: int, weights: Tensor | None) -> None:
        self.layers[layer_idx].observe(weights)

    def nbytes(self) -> int:
        return sum(layer.nbytes() for layer in self.layers)


def kv_nbytes(cache: Cache) -> int:
    """Bytes of any transformers cache (keys and values; plus metadata for an evicting cache)."""
    if isinstance(cache, EvictingCache):
        return cache.nbytes()
    return sum(
        t.numel() * t.element_size()
        for layer in cache.layers
        if layer.is_initialized
        for t in (layer.keys, layer.values)
    )
