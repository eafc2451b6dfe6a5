"""Token-tree packing for IFD scoring: several sequences per row instead of one padded row each.

Sequences that share a prefix (records with the same instruction, the template's text) keep one copy of
it per row; a 4-D boolean mask lets each token attend to its own chain only and position ids count
along the chain, so each sequence's states are those it has alone (a causal model's state at a
position depends on its prefix only). The same numbers as padded batches up to float error, with
fewer tokens through the model and no padding inside a row.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor


def _common(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the common prefix of two token lists."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def pack_rows(seqs: Sequence[list[int]], budget: int) -> list[list[int]]:
    """Sequence indices per packed row. Sequences go in lexicographic order, so those sharing a prefix
    sit side by side and the prefix is stored once per row; a row takes sequences while its token tree
    (each shared prefix counted once) stays within ``budget`` tokens (a longer sequence gets a row alone)."""
    order = sorted(range(len(seqs)), key=lambda i: seqs[i])
    rows: list[list[int]] = []
    size = 0
    for i in order:
        new = len(seqs[i]) - (_common(seqs[rows[-1][-1]], seqs[i]) if rows else 0)
        if not rows or size + new > budget:
            rows.append([i])
            size = len(seqs[i])
        else:
            rows[-1].append(i)
            size += new
    return rows


def tree_row(seqs: Sequence[list[int]]) -> tuple[list[int], list[int], list[list[int]]]:
    """One packed row of lexicographically sorted sequences as a token tree: (tokens, depth of each,
    each sequence's chain of node indices). Node k of a chain holds the sequence's token k; a prefix
    that two sequences share is one set of nodes, which is exact in a causal model (a position's state
    depends on its prefix only)."""
    tokens: list[int] = []
    depth: list[int] = []
    chains: list[list[int]] = []
    for seq in seqs:
        keep = _common(seqs[len(chains) - 1], seq) if chains else 0
        chain = chains[-1][:keep] if chains else []
        for k in range(keep, len(seq)):
            chain.append(len(tokens))
            tokens.append(seq[k])
            depth.append(k)
        chains.append(chain)
    return tokens, depth, chains


def packed_batches(
    decoder: Any,
    head: Any,
    pairs: Sequence[tuple[list[int], list[int]]],
    members: list[int],
    skip: int,
    cache: Callable[[int], Any] | None,
    pack: int,
    rows_per_batch: int,
    pad_id: int,
    device: Any,
) -> Iterator[tuple[list[int], Tensor]]:
    """(pair indices, their mean answer losses) per forward of ``rows_per_batch`` packed rows of about
    ``pack`` tokens. The ``members`` pairs all start with a shared prefix of ``skip`` tokens whose KV
    ``cache(n)`` holds (broadcast to n rows; None when ``skip`` is 0): rows hold what follows it."""
    seqs = [(pairs[i][0] + pairs[i][1])[skip:] for i in members]
    rows = [[members[k] for k in row] for row in pack_rows(seqs, pack)]
    built = [tree_row([(pairs[i][0] + pairs[i][1])[skip:] for i in row]) for row in rows]
    order = sorted(range(len(rows)), key=lambda r: len(built[r][0]))
    for start in range(0, len(order), rows_per_batch):
        batch = order[start : start + rows_per_batch]
        width = max(len(built[r][0]) for r in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        positions = torch.full((len(batch), width), skip, dtype=torch.long)
        # Who sees whom: the shared prefix's cache, then a node's own chain (ancestors and itself).
        mask = torch.zeros(len(batch), 1, width, skip + width, dtype=torch.bool)
        mask[:, :, :, :skip] = True
        diagonal = torch.arange(width)
        mask[:, 0, diagonal, skip + diagonal] = True  # padding sees itself: no empty softmax, no NaN
        where, targets, owners = [], [], []
        for b, r in enumerate(batch):
            tokens, depth, chains = built[r]
            ids[b, : len(tokens)] = torch.tensor(tokens)
            positions[b, : len(tokens)] = skip + torch.tensor(depth)
            for i, chain in zip(rows[r], chains, strict=True):
                nodes = torch.tensor(chain)
                tril = torch.ones(len(chain), len(chain), dtype=torch.bool).tril()
                mask[b, 0, nodes[:, None], skip + nodes[None, :]] |= tril
                context = len(pairs[i][0]) - skip
                seq = (pairs[i][0] + pairs[i][1])[skip:]
                # the state at token j-1 predicts token j, for every answer token j
                where += [(b, chain[j - 1]) for j in range(context, len(seq))]
                targets += seq[context:]
                owners += [i] * (len(seq) - context)
        kwargs = {}
        if cache is not None:
            kwargs["past_key_values"] = cache(len(batch))
        hidden = decoder(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            position_ids=positions.to(device),
            **kwargs,
        ).last_hidden_state
        chunk = sorted({i for r in batch for i in rows[r]})
        if not where:
            yield chunk, torch.full((len(chunk),), math.nan)
            continue
        at = torch.tensor(where, device=device)
        logits = head(hidden[at[:, 0], at[:, 1]]).float()
        target = torch.tensor(targets, device=device)
        nll = torch.nn.functional.cross_entropy(logits, target, reduction="none")
        slot = {i: k for k, i in enumerate(chunk)}
        owner = torch.tensor([slot[i] for i in owners], device=device)
        total = torch.zeros(len(chunk), device=device).index_add_(0, owner, nll)
        counts = torch.zeros(len(chunk), device=device).index_add_(0, owner, torch.ones_like(nll))
        yield chunk, torch.where(counts > 0, total / counts.clamp(min=1), math.nan)
