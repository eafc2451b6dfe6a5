"""IFD scores and Cherry selection: formulas by hand, batched scoring equal to one-sample forwards."""

from __future__ import annotations

import math

import pytest
import torch

from data.instructions.records import InstructionRecord
from data.instructions.template import RESPONSE_MARKER, format_prompt
from data.llm.loader import load_causal_lm, offline_model
from methods.ifd.scoring import (
    IFDScore,
    answer_losses,
    encode_pairs,
    ifd_scores,
    select,
    template_prefixes,
)

SMOLLM2 = offline_model("smollm2_135m")


def test_ifd_variants_by_hand() -> None:
    score = IFDScore("a", conditioned=1.0, direct=2.0, answer_tokens=3)
    assert score.ifd == pytest.approx(0.5) and score.ifd_ppl == pytest.approx(math.exp(-1.0))


def scores(values: list[float]) -> list[IFDScore]:
    return [IFDScore(f"r{i}", conditioned=v, direct=1.0, answer_tokens=2) for i, v in enumerate(values)]


def test_selection_drops_ifd_above_one_and_keeps_the_hardest() -> None:
    ifd = [1.2, 0.9, 0.5, 0.97, 0.3]
    # IFD > 1 dropped → [0.9, 0.5, 0.97, 0.3]; by IFD descending → r3 (0.97), r1 (0.9); int(4 × 0.5) = 2
    assert select(scores(ifd), rate=0.5) == ["r3", "r1"]
    assert select(scores(ifd), rate=0.5, variant="ifd_ppl") == ["r3", "r1"]  # same cut, same order here
    # a margin of 0.95 also drops r3 → [0.9, 0.5, 0.3]; int(3 × 0.5) = 1
    assert select(scores(ifd), rate=0.5, margin=0.95) == ["r1"]


@pytest.fixture(scope="module")
def smollm2():
    return load_causal_lm(SMOLLM2)


RECORDS = [
    InstructionRecord("a", "Reverse the word.", "planet", "tenalp"),
    InstructionRecord("b", "What is 12 plus 30?", "", "42"),
    InstructionRecord("c", "Sort these words alphabetically.", "pear apple fig", "apple fig pear"),
]


def test_batched_losses_equal_one_sample_forwards(smollm2) -> None:
    model, tok = smollm2.model, smollm2.tokenizer
    pairs = encode_pairs(tok, RECORDS, max_length=512)
    assert pairs[0][0] == tok(format_prompt(RECORDS[0])).input_ids
    assert pairs[1][0] == tok(RESPONSE_MARKER, add_special_tokens=False).input_ids
    assert pairs[0][1] == pairs[1][1]  # the same answer tokens in both scores
    batched = answer_losses(model, pairs, batch_size=4, pad_id=tok.pad_token_id)
    prefixes = template_prefixes(tok)
    # every context starts with one of the template's prefixes, so all of them take the cached path
    assert all(any(c[: len(p)] == p for p in prefixes) for c, _ in pairs)
    reused = answer_losses(model, pairs, batch_size=4, pad_id=tok.pad_token_id, prefixes=prefixes)
    assert reused == pytest.approx(batched, abs=1e-4)
    for (context, answer), loss in zip(pairs, batched, strict=True):
        ids = torch.tensor([context + answer])
        with torch.no_grad():
            logp = torch.log_softmax(model(ids).logits[0, :-1].float(), dim=-1)
        targets = ids[0, len(context) :]
        expected = -logp[len(context) - 1 :].gather(-1, targets[:, None]).mean().item()
        assert loss == pytest.approx(expected, abs=2e-4)


def test_the_instruction_helps_a_real_model(smollm2) -> None:
    """On answers the prompt determines, the instruction lowers the answer loss: IFD < 1."""
    result = ifd_scores(smollm2.model, smollm2.tokenizer, RECORDS, batch_size=2)
    assert [s.id for s in result] == ["a", "b", "c"]
    assert all(0 < s.ifd < 1 for s in result)
    assert all(s.ifd_ppl == pytest.approx(math.exp(s.conditioned - s.direct)) for s in result)
