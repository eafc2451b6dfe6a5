"""IFD scores (arXiv 2308.12032, Sec. 3): how much the instruction helps the model produce the answer.

    s(A|Q) = (1/N) Σ_i −log p(a_i | Q, a_<i)      conditioned answer loss (Eq. 3; the minus signs the
                                                   paper drops, as the authors confirmed)
    s(A)   = (1/N) Σ_i −log p(a_i | a_<i)          direct answer loss (Eq. 4)
    IFD    = s(A|Q) / s(A)                          loss-ratio variant (Cherry)
    IFD_ppl = exp(s(A|Q) − s(A)) = ppl(A|Q) / ppl(A) perplexity-ratio variant (Superfiltering)

Encoding follows the official code (tianyi-lab/Cherry_LLM cherry_seletion/data_analysis.py, ``mod
cherry``): each score's text is one joint encoding, context + answer, with the tokenizer's special
tokens (a Llama BOS in both), split at the length of the context encoded alone. The conditioned context
is the full prompt; the direct context is the prompt's last line, the response marker, with the same
ending (so both see the same text before the answer). Tokenizing the answer apart would give a
SentencePiece tokenizer a spurious leading ``▁``. The direct answer is cut to the conditioned answer's
length, so both losses cover the same number of answer tokens (the official code approximates this with
``max_length - len(prompt) - 2``). Scoring is batched, never one sample per forward: all 2N sequences are
packed into token-tree rows (a prefix that records share is run once), or sorted by length into padded
batches.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from data.instructions.records import InstructionRecord
from data.instructions.template import PROMPT_NO_INPUT, PROMPT_WITH_INPUT, RESPONSE_MARKER, format_prompt
from methods.ifd.packing import packed_batches


@dataclass(frozen=True)
class IFDScore:
    id: str
    conditioned: float  # s(A|Q)
    direct: float  # s(A)
    answer_tokens: int

    @property
    def ifd(self) -> float:
        return self.conditioned / self.direct if self.direct > 0 else math.inf

    @property
    def ifd_ppl(self) -> float:
        return math.exp(self.conditioned - self.direct)


def direct_context(prompt: str) -> str:
    """The direct score's context: the prompt from its response marker on, ending as the prompt ends
    ("### Response:\n" for our Alpaca template, "### Response:" for the WizardLM one)."""
    at = prompt.rfind(RESPONSE_MARKER)
    if at < 0:
        raise ValueError(f"prompt {prompt[-40:]!r} does not hold the response marker {RESPONSE_MARKER!r}")
    return prompt[at:]


def split_encoding(tokenizer: Any, context: str, answer: str) -> tuple[list[int], list[int]]:
    """(context ids, answer ids) of one joint encoding of ``context + answer`` with special tokens, split
    at the length of ``context`` encoded alone (the official ``start_token``)."""
    ids = tokenizer(context + answer).input_ids
    split = len(tokenizer(context).input_ids)
    return ids[:split], ids[split:]


def encode_pairs(
    tokenizer: Any, records: Sequence[InstructionRecord], max_length: int, template: str = "alpaca"
) -> list[tuple[list[int], list[int]]]:
    """Per record two (context ids, answer ids) pairs: conditioned then direct. Answers are cut so that
    the conditioned sequence fits ``max_length``; the direct answer keeps as many tokens."""
    pairs = []
    for record in records:
        prompt = format_prompt(record, template)
        context, answer = split_encoding(tokenizer, prompt, record.output)
        answer = answer[: max(max_length - len(context), 0)]
        marker, direct_answer = split_encoding(tokenizer, direct_context(prompt), record.output)
        pairs += [(context, answer), (marker, direct_answer[: len(answer)])]
    return pairs


def decoder_and_head(model: Any) -> tuple[Any, Any]:
    """The transformer body and the vocabulary projection of a causal LM, PEFT-wrapped or not."""
    causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    return causal_lm.base_model, causal_lm.get_output_embeddings()


def _prefix_cache(decoder: Any, prefix: list[int], device: Any) -> Callable[[int], Any]:
    """The KV cache of a shared prompt prefix, computed once; ``cache(n)`` broadcasts it to n rows."""
    from transformers import DynamicCache

    out = decoder(input_ids=torch.tensor([prefix], device=device), use_cache=True)
    legacy = out.past_key_values.to_legacy_cache()
    return lambda n: DynamicCache.from_legacy_cache(
        tuple((k.expand(n, -1, -1, -1), v.expand(n, -1, -1, -1)) for k, v in legacy)
    )


def _group_by_prefix(
    pairs: Sequence[tuple[list[int], list[int]]], prefixes: Sequence[list[int]]
) -> dict[int, list[int]]:
    """Pair indices by the longest given prefix their context starts with (−1: none), token-exact, so a
    tokenization that merges across the prefix boundary just falls back to the full forward."""
    ranked = sorted(range(len(prefixes)), key=lambda p: -len(prefixes[p]))
    groups: dict[int, list[int]] = {}
    for i, (context, _) in enumerate(pairs):
        match = next(
            (
                p
                for p in ranked
                if len(context) >= len(prefixes[p]) and context[: len(prefixes[p])] == prefixes[p]
            ),
            -1,
        )
        groups.setdefault(match, []).append(i)
    return groups


@torch.inference_mode()
def answer_losses(
    model: Any,
    pairs: Sequence[tuple[list[int], list[int]]],
    batch_size: int = 16,
    pad_id: int = 0,
    on_batch: Callable[[int], None] | None = None,
    prefixes: Sequence[list[int]] = (),
    device: torch.device | str | None = None,
    pack: int = 0,
) -> list[float]:
    """Mean NLL of each pair's answer tokens given its context, in the order of ``pairs``.

    Sequences are length-sorted into padded batches. A context that starts with one of ``prefixes``
    (the prompt template's fixed header) reuses that prefix's KV cache, computed once, so the header
    is never run again: the same numbers with fewer tokens through the model. ``device`` (the runner's,
    ``ctx.device``) is where the model is moved and every tensor goes; None: where the model is.

    ``pack`` > 0 packs sequences into rows of about that many tokens instead of padding them, each row
    a token tree: sequences that share a prefix (records with the same instruction) store it once, a
    4-D mask lets each token see only its own chain, and position ids restart per chain, so every
    sequence is computed as if alone (same numbers up to float error); ``batch_size`` is then rows
    per forward.
    """
    losses = [math.nan] * len(pairs)
    if device is not None:
        model = model.to(device)
    device = next(model.parameters()).device
    decoder, head = decoder_and_head(model)
    for p, members in _group_by_prefix(pairs, prefixes).items():
        # The prefix's last token stays in the batch: its hidden state predicts the first answer token
        # when the context is the prefix alone (the direct score's response marker).
        shared = prefixes[p][:-1] if p >= 0 else []
        skip = len(shared)
        cache = _prefix_cache(decoder, shared, device) if shared else None
        if pack > 0:
            for chunk, values in packed_batches(
                decoder, head, pairs, members, skip, cache, pack, batch_size, pad_id, device
            ):
                for i, value in zip(chunk, values.tolist(), strict=True):
                    losses[i] = value
                if on_batch is not None:
                    on_batch(len(chunk))
            continue
        order = sorted(members, key=lambda i: len(pairs[i][0]) + len(pairs[i][1]))
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            seqs = [(pairs[i][0] + pairs[i][1])[skip:] for i in chunk]
            width = max(len(s) for s in seqs)
            ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
            mask = torch.zeros(len(seqs), skip + width, dtype=torch.long)
            mask[:, :skip] = 1
            labels = torch.full((len(seqs), width), -100, dtype=torch.long)
            for row, (i, seq) in enumerate(zip(chunk, seqs, strict=True)):
                ids[row, : len(seq)] = torch.tensor(seq)
                mask[row, skip : skip + len(seq)] = 1
                context = len(pairs[i][0]) - skip
                labels[row, context : len(seq)] = ids[row, context : len(seq)]
            kwargs = {}
            if cache is not None:
                kwargs = {
                    "past_key_values": cache(len(chunk)),
                    "position_ids": torch.arange(skip, skip + width, device=device).expand(len(chunk), -1),
                }
            # The vocabulary projection only where an answer token is predicted: prompts are most of
            # each sequence, and their logits are never needed.
            hidden = decoder(
                input_ids=ids.to(device), attention_mask=mask.to(device), **kwargs
            ).last_hidden_state
            target = labels[:, 1:].to(device)
            scored = target != -100
            logits = head(hidden[:, :-1][scored]).float()
            nll = torch.nn.functional.cross_entropy(logits, target[scored], reduction="none")
            counts = scored.sum(dim=1)
            rows = torch.arange(len(chunk), device=device).repeat_interleave(counts)
            total: Tensor = torch.zeros(len(chunk), device=device).index_add_(0, rows, nll)
            per_seq = total / counts.clamp(min=1)
            for i, value, n in zip(chunk, per_seq.tolist(), counts.tolist(), strict=True):
                losses[i] = value if n > 0 else math.nan
            if on_batch is not None:
                on_batch(len(chunk))
    return losses


def template_prefixes(tokenizer: Any, template: str = "alpaca") -> list[list[int]]:
    """The token ids (special tokens included) every conditioned context starts with (the template's
    fixed header, with or without an input block; the WizardLM prompt has none) and the direct contexts."""
    prefixes = []
    if template == "alpaca":
        headers = [PROMPT_WITH_INPUT.split("{instruction}")[0], PROMPT_NO_INPUT.split("{instruction}")[0]]
        prefixes += [tokenizer(h).input_ids for h in headers]
    endings = {direct_context(format_prompt(_Blank(has_input), template)) for has_input in (False, True)}
    return prefixes + [tokenizer(e).input_ids for e in sorted(endings)]


@dataclass(frozen=True)
class _Blank:
    """A record with an empty instruction (and an input or not): for the template's fixed parts."""

    has_input: bool
    instruction: str = ""

    @property
    def input(self) -> str:
        return "x" if self.has_input else ""


def ifd_scores(
    model: Any,
    tokenizer: Any,
    records: Sequence[InstructionRecord],
    max_length: int = 512,
    batch_size: int = 16,
    template: str = "alpaca",
    device: torch.device | str | None = None,
    pack: int = 256,
) -> list[IFDScore]:
    """Both losses of every record, on ``device`` (the runner's; None: where the model is). ``pack``:
    tokens per packed row, ``batch_size`` rows per forward (1.6× faster than padded batches of 8 on
    the bench's CPU, bench/ifd_scoring.py --sweep); 0: padded batches of ``batch_size`` sequences."""
    pairs = encode_pairs(tokenizer, records, max_length, template)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    prefixes = template_prefixes(tokenizer, template)
    losses = answer_losses(model, pairs, batch_size, pad, prefixes=prefixes, device=device, pack=pack)
    return [
        IFDScore(r.id, losses[2 * k], losses[2 * k + 1], len(pairs[2 * k][1])) for k, r in enumerate(records)
    ]


def select(scores: Sequence[IFDScore], rate: float, variant: str = "ifd", margin: float = 1.0) -> list[str]:
    """Cherry selection: drop IFD > ``margin`` (1.0 as in the paper: the answer is easier without the
    instruction; 0.95 also drops the corrupted answers that sit just below 1), sort the rest by IFD
    descending, keep int(len(filtered) × rate) ids. Both variants share the cut (ratio > 1 ⇔ ppl ratio > 1).
    """
    value = (lambda s: s.ifd) if variant == "ifd" else (lambda s: s.ifd_ppl)
    kept = [s for s in scores if s.answer_tokens > 0 and value(s) <= margin]
    kept.sort(key=value, reverse=True)
    return [s.id for s in kept[: int(len(kept) * rate)]]
