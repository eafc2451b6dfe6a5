"""lm-eval-harness tasks (COPA, PiQA, OpenBookQA, Winogrande) with our KV cache plugged in (online).

These multiple-choice tasks score ``log p(continuation | context)``. As in the paper, the budget is a
share of each request's length: the context is prefilled and compressed to the budget, then the
continuation is scored against what the cache kept.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch

from data.llm.attention import observing
from data.llm.kv_cache import EvictingCache


@torch.no_grad()
def continuation_logprobs(
    model: Any, tokenizer: Any, requests: list[tuple[str, str]], make_cache: Callable[[int], Any]
) -> list[tuple[float, bool]]:
    """For each (context, continuation): Σ log p(continuation tokens) and whether greedy decoding
    would have produced exactly the continuation."""
    results = []
    for context, continuation in requests:
        ctx_ids = tokenizer(context, return_tensors="pt").input_ids.to(model.device)
        cont_ids = tokenizer(continuation, return_tensors="pt", add_special_tokens=False).input_ids.to(
            model.device
        )
        cache = make_cache(ctx_ids.shape[1] + cont_ids.shape[1])
        observe = observing(cache.observe) if isinstance(cache, EvictingCache) else contextlib.nullcontext()
        with observe:
            logits = model(ctx_ids, past_key_values=cache, use_cache=True).logits[:, -1:]
            if cont_ids.shape[1] > 1:
                more = model(cont_ids[:, :-1], past_key_values=cache, use_cache=True).logits
                logits = torch.cat([logits, more], dim=1)
        logp = torch.log_softmax(logits.float(), dim=-1)[0]
        target = cont_ids[0]
        results.append(
            (logp.gather(-1, target[:, None]).sum().item(), bool((logp.argmax(-1) == target).all()))
        )
    return results


def evaluate_tasks(method: Any, ctx: Any, model: Any, tokenizer: Any) -> dict[str, float]:
    """Run ``method.cfg.tasks`` through lm-eval with the method's cache; return accuracy per task."""
    try:
        import lm_eval
        from lm_eval.api.model import LM
    except ImportError as ex:
        raise ImportError("method.evaluation=lm_eval needs `pip install lm-eval` and hub access") from ex

    make_cache = lambda length: method.make_cache(model.config.num_hidden_layers, length)  # noqa: E731

    class CacheLM(LM):
        def loglikelihood(self, requests: list) -> list[tuple[float, bool]]:
            return continuation_logprobs(model, tokenizer, [r.args for r in requests], make_cache)

        def loglikelihood_rolling(self, requests: list) -> list[float]:
            raise NotImplementedError("rolling loglikelihood: use method.evaluation=perplexity")

        def generate_until(self, requests: list) -> list[str]:
            raise NotImplementedError("generation tasks: use method.evaluation=generate")

    cfg = method.cfg
    out = lm_eval.simple_evaluate(
        model=CacheLM(), tasks=list(cfg.tasks), limit=cfg.limit, random_seed=cfg.seed
    )
    metrics = {}
    for task, values in out["results"].items():
        for key, value in values.items():
            if key.startswith("acc") and "stderr" not in key and isinstance(value, int | float):
                metrics[f"{task}/{key.split(',')[0]}"] = float(value)
    ctx.log(metrics, step=0)
    return metrics
