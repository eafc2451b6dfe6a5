"""bench/ifd_scoring.py: its baseline is the official Cherry loop with our scores, its token counts are
what went through the model, and its quick mode runs (issue 17)."""

from __future__ import annotations

import sys

import pytest

from bench import ifd_scoring
from data.instructions.records import InstructionRecord
from data.llm.loader import load_causal_lm
from methods.ifd.scoring import answer_losses, encode_pairs, template_prefixes

RECORDS = [
    InstructionRecord("a", "Reverse the word.", "planet", "tenalp"),
    InstructionRecord("b", "What is 12 plus 30?", "", "42"),
    InstructionRecord("c", "Reverse the word.", "stone", "enots"),
]


@pytest.fixture(scope="module")
def smollm2():
    return load_causal_lm(ifd_scoring.SMOLLM2)


def test_the_official_loop_gives_our_scores_and_the_counts_are_exact(smollm2) -> None:
    model, tok = smollm2.model, smollm2.tokenizer
    pairs = encode_pairs(tok, RECORDS, max_length=512)
    prefixes = template_prefixes(tok)
    official = ifd_scoring.official(model, pairs)
    ours = answer_losses(model, pairs, 1, tok.pad_token_id, prefixes=prefixes, pack=512)
    assert ours == pytest.approx(official, abs=1e-4)
    # official: every position of both sequences through the body and the head
    lengths = sum(len(c) + len(a) for c, a in pairs)
    assert ifd_scoring.count_tokens(model, lambda: ifd_scoring.official(model, pairs)) == (lengths, lengths)
    body, head = ifd_scoring.count_tokens(
        model, lambda: answer_losses(model, pairs, 1, tok.pad_token_id, prefixes=prefixes, pack=512)
    )
    assert head == sum(len(a) for _, a in pairs)  # the head only where an answer token is predicted
    assert body < lengths - len(RECORDS) * (len(prefixes[-1]) - 1)  # the markers' KV, at least, is reused


def test_quick_mode_prints_the_median_ratio(monkeypatch, capsys) -> None:
    monkeypatch.setattr(sys, "argv", ["ifd_scoring.py", "--quick"])
    ifd_scoring.main()
    out = capsys.readouterr().out
    assert "ratio (median, range)" in out and "FLOP bound" in out
    assert "ifd scoring: ours / official samples/s (median)" in out and "[quick" in out
