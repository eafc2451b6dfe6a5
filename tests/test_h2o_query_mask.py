"""The per-query eviction mask (one forward pass) equals token-by-token streaming through the evicting
cache, and with it the first continuation token is scored under the budget, not with the full cache."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from data.llm.attention import observing
from data.llm.eviction import make_policy
from data.llm.kv_cache import EvictingCache
from methods.h2o.query_mask import Eviction, evicting, register_query_mask_attention
from tests.test_h2o_causality import VOCAB, tiny_config

LENGTH, BUDGET, RECENT = 24, 6, 3


def tiny_model(family: str) -> torch.nn.Module:
    torch.manual_seed(0)
    attention = register_query_mask_attention()
    return AutoModelForCausalLM.from_config(tiny_config(family), attn_implementation=attention).eval()


def request(seed: int = 1) -> torch.Tensor:
    return torch.randint(0, VOCAB, (1, LENGTH), generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def streamed(model: torch.nn.Module, ids: torch.Tensor, policy: str) -> torch.Tensor:
    """Logits of every position, feeding one token at a time through a real evicting cache."""
    cache = EvictingCache(model.config.num_hidden_layers, make_policy(policy, RECENT, sinks=2), BUDGET)
    with observing(cache.observe):
        out = [model(ids[:, t : t + 1], past_key_values=cache).logits[0, -1] for t in range(LENGTH)]
    assert cache.layers[0].keys.shape[-2] == BUDGET  # the budget bit: entries were evicted
    return torch.stack(out)


@torch.no_grad()
def masked(model: torch.nn.Module, ids: torch.Tensor, policy: str) -> torch.Tensor:
    with evicting(Eviction(make_policy(policy, RECENT, sinks=2), BUDGET)):
        return model(ids, use_cache=False).logits[0]


@pytest.mark.parametrize("family", ["opt", "llama", "gpt_neox"])
@pytest.mark.parametrize("policy", ["h2o", "local", "streaming"])
def test_one_pass_mask_equals_token_by_token_streaming(family: str, policy: str) -> None:
    model = tiny_model(family)
    ids = request()
    reference = streamed(model, ids, policy)
    torch.testing.assert_close(masked(model, ids, policy), reference, atol=1e-5, rtol=1e-5)
    # Not vacuous: past the budget, eviction changes the logits against full attention.
    full = model(ids, use_cache=False).logits[0]
    torch.testing.assert_close(full[:BUDGET], reference[:BUDGET], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(full[BUDGET + 1 :], reference[BUDGET + 1 :], atol=1e-3)


@pytest.mark.parametrize("family", ["opt", "llama"])
def test_first_continuation_token_is_scored_under_the_budget(family: str) -> None:
    """The logits at the last context position predict the first continuation token. Prefilling the
    context with full attention and compressing afterwards (the old protocol) scores it as the full cache
    does; the per-query mask scores it with what the budget keeps."""
    model = tiny_model(family)
    ids = request(seed=3)
    context = ids[:, :-1]
    full_first = model(context, use_cache=False).logits[0, -1]
    with torch.no_grad():
        cache = EvictingCache(model.config.num_hidden_layers, make_policy("h2o", RECENT), BUDGET)
        with observing(cache.observe):
            prefilled_first = model(context, past_key_values=cache, use_cache=True).logits[0, -1]
    torch.testing.assert_close(prefilled_first, full_first, atol=1e-5, rtol=1e-5)
    h2o_first = masked(model, context, "h2o")[-1]
    assert not torch.allclose(h2o_first, full_first, atol=1e-3)


def test_official_mask_by_hand() -> None:
    """The official lm-eval simulation with heavy = 3, recent = 1 on 6 queries whose causal attention
    rows are given: the first 3 queries see each other; then query t sees the top-2 keys by accumulated
    score, itself, and key t - 1; keys outside the heavy set lose their score each step."""
    from methods.h2o.query_mask import official_visible_keys

    rows = [
        [1.0, 0, 0, 0, 0, 0],
        [0.5, 0.5, 0, 0, 0, 0],
        [0.2, 0.2, 0.6, 0, 0, 0],
        [0.1, 0.1, 0.1, 0.7, 0, 0],  # heavy {0, 1} (scores 1.7, 0.7, 0.6): sees 0, 1, 3 and 2 (recent)
        [0.05, 0.0, 0.05, 0.0, 0.9, 0],  # heavy {0, 1} (1.8, 0.8 > 0.7): sees 0, 1, 4 and 3
        [0.2, 0.2, 0.2, 0.2, 0.1, 0.1],  # heavy {0, 4} (1.85, 0.9 > 0.8): sees 0, 4, 5 (and 4)
    ]
    scores = torch.tensor(rows).log()[None, None, None]  # softmax(log p) = p
    visible = official_visible_keys(scores, heavy=3, recent=1)[0, 0]
    expected = [{0}, {0, 1}, {0, 1, 2}, {0, 1, 2, 3}, {0, 1, 3, 4}, {0, 4, 5}]
    assert [set(torch.nonzero(row).flatten().tolist()) for row in visible] == expected
    # local in the official code: no heavy hitters, the band of `recent` previous keys only
    local = official_visible_keys(scores, heavy=0, recent=2)[0, 0]
    assert [set(torch.nonzero(row).flatten().tolist()) for row in local][3:] == [
        {1, 2, 3},
        {2, 3, 4},
        {3, 4, 5},
    ]


def test_official_mask_flag_takes_the_official_counts_and_differs_from_the_paper() -> None:
    from methods.h2o.method import H2O
    from methods.h2o.query_mask import OfficialMask

    method = H2O(policy="h2o", budget=0.2, evaluation="lm_eval", mask="official")
    assert method.query_mask(57) == OfficialMask(heavy=5, recent=5)  # int(0.1 × 57) each, as the official
    assert H2O(policy="local", budget=0.2, mask="official").query_mask(57) == OfficialMask(0, 11)
    assert H2O(policy="full", mask="official").query_mask(57) is None
    with pytest.raises(ValueError, match=r"method\.mask=official.*policy='streaming'"):
        H2O(policy="streaming", mask="official")
    model = tiny_model("opt")
    ids = request()
    with torch.no_grad(), evicting(OfficialMask(heavy=3, recent=3)):
        official = model(ids, use_cache=False).logits[0]
    assert not torch.allclose(official, masked(model, ids, "h2o"), atol=1e-3)


@pytest.mark.parametrize("policy", ["local", "streaming"])
def test_closed_form_of_position_policies_equals_the_replayed_cache(policy: str) -> None:
    from methods.h2o.query_mask import closed_form, replayed_keys

    scores = torch.randn(1, 2, 2, 12, 12, generator=torch.Generator().manual_seed(0))
    scores = scores + torch.full((12, 12), float("-inf")).triu(1)
    for budget in range(1, 13):
        eviction = Eviction(make_policy(policy, budget, sinks=3), budget)
        closed = closed_form(eviction.policy, budget, 12, scores.device)
        if closed is None:  # streaming with no room beyond the sinks: replayed only
            assert policy == "streaming" and budget <= 3
            continue
        replayed = replayed_keys(scores, eviction)
        assert torch.equal(closed.expand_as(replayed), replayed), budget
