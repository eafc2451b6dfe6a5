"""A KV cache for transformers (4.57 line) that really drops entries, per layer and per KV head.

Each layer keeps, beside keys and values, every entry's absolute position and the softmax attention it
has accumulated (fed by ``data.llm.attention.observed_attention``). After each attention call the layer
evicts down to its budget with an ``EvictionPolicy``; the tensors shrink, so memory follows the budget.

Positions stay correct under eviction: ``get_seq_length`` reports the tokens *seen* (so new tokens get
the right RoPE positions; cached keys keep the rotation they were written with) and ``get_mask_sizes``
offsets the causal mask by the number of evicted entries.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from transformers.cache_utils import Cache, DynamicLayer

from data.llm.eviction import EvictionPolicy, LayerEntries


class EvictingLayer(DynamicLayer):
    def __init__(self, policy: EvictionPolicy, budget: int) -> None:
        super().__init__()
        self.policy, self.budget, self.seen = policy, budget, 0

    def lazy_initialization(self, key_states: Tensor) -> None:
        super().lazy_initialization(key_states)
        batch, heads = key_states.shape[:2]
        self.keys = key_states.new_zeros(batch, heads, 0, key_states.shape[-1])
        self.values = self.keys.clone()
        self.positions = torch.zeros(batch, heads, 0, dtype=torch.long, device=key_states.device)
        self.scores = torch.zeros(batch, heads, 0, dtype=torch.float32, device=key_states.device)

    def update(
        self, key_states: Tensor, value_states: Tensor, cache_kwargs: dict[str, Any] | None = None
    ) -> tuple[Tensor, Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states)
        batch, heads, new = key_states.shape[:3]
        positions = torch.arange(self.seen, self.seen + new, device=key_states.device)
        self.keys = torch.cat([self.keys, key_states], dim=-2)
        self.values = torch.cat([self.values, value_states], dim=-2)
        self.positions = torch.cat([self.positions, positions.expand(batch, heads, new)], dim=-1)
        self.scores = torch.cat([self.scores, self.scores.new_zeros(batch, heads, new)], dim=-1)
        self.seen += new
        return self.keys, self.values

    def observe(self, weights: Tensor) -> None:
        """Accumulate the attention each entry received (summed over a KV head's query heads and over
        the queries of this call: column sums at prefill), then evict down to the budget."""
        if self.policy.needs_scores:
            self.scores += weights.sum(dim=(2, 3), dtype=torch.float32)
        if self.keys.shape[-2] > self.budget:
            keep = self.policy.keep(LayerEntries(self.positions, self.scores, self.seen), self.budget)
            index = keep.unsqueeze(-1).expand(-1, -1, -1, self.keys.shape[-1])
            self.keys, self.values = self.keys.gather(2, index), self.values.gather(2, index)
            self.positions, self.scores = self.positions.gather(2, keep), self.scores.gather(2, keep)

    def get_seq_length(self) -> int:
        return self.seen

    def get_mask_sizes(self, cache_position: Tensor) -> tuple[int, int]:
        stored = self.keys.shape[-2] if self.is_initialized else 0
        return stored + cache_position.shape[0], self.seen - stored

    def nbytes(self) -> int:
        """Bytes held: keys and values, plus the per-entry position and score."""
        if not self.is_initialized:
            return 0
        return sum(
            t.numel() * t.element_size() for t in (self.keys, self.values, self.positions, self.scores)
        )


class EvictingCache(Cache):
    """One ``EvictingLayer`` per decoder layer; ``observe`` is the hook the attention function calls."""

    def __init__(self, num_layers: int, policy: EvictionPolicy, budget: int) -> None:
        super().__init__(layers=[EvictingLayer(policy, budget) for _ in range(num_layers)])
        self.policy, self.budget = policy, budget

    def observe(self, layer_idx: int, weights: Tensor) -> None:
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
