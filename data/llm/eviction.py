"""KV-cache eviction policies behind one interface: which cached entries to keep, per layer and KV head.

A policy ranks the entries of one layer (higher priority survives) and may protect some outright.
The cache keeps the ``budget`` entries of highest priority, protected ones first:

- ``full``: never evicts.
- ``h2o`` (arXiv 2306.14048, Alg. 1): protect the ``recent`` newest positions; rank the rest by the
  attention they have accumulated (heavy hitters).
- ``local``: the newest ``budget`` positions.
- ``streaming`` (StreamingLLM): ``sinks`` first positions plus the newest ones.
- ``random``: protect the ``recent`` newest; keep a random subset of the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from runners.schemas import check_choice

POLICIES = ("full", "h2o", "local", "streaming", "random")


@dataclass
class LayerEntries:
    """What a policy may look at: per entry its absolute position and accumulated attention."""

    positions: Tensor  # [batch, kv_heads, n] int64
    scores: Tensor  # [batch, kv_heads, n] float32, Σ of softmax attention received so far
    seen: int  # tokens seen so far; the newest position is seen - 1


class EvictionPolicy:
    needs_scores = False

    def priority(self, entries: LayerEntries) -> Tensor:
        """Higher survives; +inf marks a protected entry."""
        raise NotImplementedError

    def keep(self, entries: LayerEntries, budget: int) -> Tensor:
        """Indices [batch, kv_heads, budget] of the entries to keep, in their original order."""
        return torch.topk(self.priority(entries), budget, dim=-1, sorted=False).indices.sort(dim=-1).values


class Full(EvictionPolicy):
    def priority(self, entries: LayerEntries) -> Tensor:
        return torch.full_like(entries.scores, float("inf"))


class HeavyHitter(EvictionPolicy):
    needs_scores = True

    def __init__(self, recent: int) -> None:
        self.recent = recent

    def priority(self, entries: LayerEntries) -> Tensor:
        recent = entries.positions >= entries.seen - self.recent
        return entries.scores.masked_fill(recent, float("inf"))


class Local(EvictionPolicy):
    def priority(self, entries: LayerEntries) -> Tensor:
        return entries.positions.float()


class Streaming(EvictionPolicy):
    def __init__(self, sinks: int) -> None:
        self.sinks = sinks

    def priority(self, entries: LayerEntries) -> Tensor:
        return entries.positions.float().masked_fill(entries.positions < self.sinks, float("inf"))


class Random(EvictionPolicy):
    def __init__(self, recent: int, seed: int) -> None:
        self.recent = recent
        self.generator = torch.Generator().manual_seed(seed)

    def priority(self, entries: LayerEntries) -> Tensor:
        noise = torch.rand(entries.positions.shape, generator=self.generator).to(entries.positions.device)
        return noise.masked_fill(entries.positions >= entries.seen - self.recent, float("inf"))


def make_policy(name: str, recent: int, sinks: int = 4, seed: int = 0) -> EvictionPolicy:
    check_choice("policy", name, POLICIES)
    return {
        "full": lambda: Full(),
        "h2o": lambda: HeavyHitter(recent),
        "local": lambda: Local(),
        "streaming": lambda: Streaming(sinks),
        "random": lambda: Random(recent, seed),
    }[name]()
