"""The lm-eval model sizes each request's budget from the tokens it actually scores: a request longer than
the model's window is cut on the left, and the budget ratio applies to what is left, not the uncut length."""

from __future__ import annotations

import contextlib
from types import SimpleNamespace

import pytest
import torch

from methods.h2o.lm_eval_tasks import make_lm, score_request
from methods.h2o.method import H2O
from methods.h2o.query_mask import register_query_mask_attention
from tests.test_h2o_cache import tiny_llama


class _Ctx:
    def progress(self, total: int, label: str) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext(SimpleNamespace(update=lambda: None))


@pytest.mark.parametrize(("length", "limit", "expected_budget"), [(20, 2048, 4), (60, 19, 4), (60, 39, 8)])
def test_budget_follows_the_scored_window(length: int, limit: int, expected_budget: int) -> None:
    model = tiny_llama(register_query_mask_attention())
    model.config.max_position_embeddings = limit  # lm-eval's window: the model's context length
    method = H2O(policy="h2o", budget=0.2)
    seen: list[int] = []
    original = method.query_mask
    method.query_mask = lambda n: seen.append(original(n).budget) or original(n)  # type: ignore[method-assign]

    ids = torch.randint(0, 96, (length,), generator=torch.Generator().manual_seed(5)).tolist()
    context, continuation = ids[:-5], ids[-5:]
    lm = make_lm(method, _Ctx(), model, tokenizer=SimpleNamespace(eos_token_id=0))
    [(logp, _)] = lm._loglikelihood_tokens([(None, context, continuation)])

    assert seen == [expected_budget]  # 0.2 × min(length, limit + 1)
    # and it is the score of the cut request under that budget
    expected, _ = score_request(model, context, continuation, method.eviction(min(length, limit + 1)), limit)
    assert logp == pytest.approx(expected, abs=1e-5)
