"""H2O's evaluations: streaming perplexity under eviction, and generation under a budget."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from transformers import DynamicCache

from data.llm.attention import observing
from data.llm.kv_cache import EvictingCache, kv_nbytes


@dataclass
class StreamResult:
    nll: float  # mean negative log-likelihood per predicted token (nats)
    tokens: int
    tokens_per_second: float
    kv_bytes: int  # cache size at the end of the stream
    kv_entries: int  # entries per layer and head at the end


def _observe(cache: Any) -> contextlib.AbstractContextManager:
    return observing(cache.observe) if isinstance(cache, EvictingCache) else contextlib.nullcontext()


@torch.no_grad()
def streaming_nll(
    model: Any, input_ids: torch.Tensor, cache: Any, on_step: Callable[[int], None] | None = None
) -> StreamResult:
    """Feed ``input_ids`` [batch, T] one token at a time through ``cache``; score each next token.

    Every prediction sees only what the cache kept, so eviction mistakes show up as perplexity.
    """
    total, steps = 0.0, input_ids.shape[1] - 1
    start = time.perf_counter()
    with _observe(cache):
        for t in range(steps):
            logits = model(input_ids[:, t : t + 1], past_key_values=cache, use_cache=True).logits[:, -1]
            total += torch.nn.functional.cross_entropy(
                logits.float(), input_ids[:, t + 1], reduction="sum"
            ).item()
            if on_step is not None:
                on_step(t)
    seconds = time.perf_counter() - start
    batch = input_ids.shape[0]
    return StreamResult(
        nll=total / (steps * batch),
        tokens=steps * batch,
        tokens_per_second=steps * batch / seconds,
        kv_bytes=kv_nbytes(cache),
        kv_entries=cache.layers[0].keys.shape[-2],
    )


@torch.no_grad()
def generate(model: Any, tokenizer: Any, prompt_ids: torch.Tensor, cache: Any, max_new_tokens: int) -> dict:
    """Greedy generation with ``cache`` (the prompt is compressed to the budget after prefill)."""
    start = time.perf_counter()
    with _observe(cache):
        out = model.generate(
            input_ids=prompt_ids,
            attention_mask=torch.ones_like(prompt_ids),
            past_key_values=cache,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
        )
    new = out[:, prompt_ids.shape[1] :]
    return {
        "text": tokenizer.batch_decode(new, skip_special_tokens=True),
        "new_tokens": int(new.shape[1]),
        "tokens_per_second": new.numel() / (time.perf_counter() - start),
        "kv_bytes": kv_nbytes(cache),
    }


def full_cache() -> DynamicCache:
    """The model's own cache: the reference every policy is measured against."""
    return DynamicCache()
