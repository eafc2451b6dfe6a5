"""The both-order pairwise judge: parsing, verdict rules, winning score, and position bias cancelled."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from data.llm.client import LLMClient, OpenAIBackend
from data.llm.judge import combine, judge_pairs, parse_scores, save_verdicts, summarize, winning_score
from tests.test_llm_client import scripted_server, url


@pytest.mark.parametrize(
    ("text", "scores"),
    [
        ("8 6\nAssistant 1 is better.", (8.0, 6.0)),
        ("\n  7.5, 9\n...", (7.5, 9.0)),  # leading blank line, comma separator, as the official split
        ("8,7\nreasons", (8.0, 7.0)),
        # Labelled or fractional first lines are errors, as in the official parse_score: never (1, 8)
        # or (8, 10), which counted as parsed and cancelled into ties.
        ("Assistant 1: 8, Assistant 2: 7", None),
        ("8/10 and 7/10", None),
        ("Scores: 7.5, 9", None),
        ("8 7 6", None),  # three values are not a pair
        ("nan 7", None),
        ("I think both are fine.", None),
        ("10\n9", None),  # one number on the first line is not a pair
    ],
)
def test_parse_scores(text: str, scores: tuple[float, float] | None) -> None:
    assert parse_scores(text) == scores


@pytest.mark.parametrize(
    ("first", "second", "verdict"),
    [
        ("win", "win", "win"),
        ("win", "tie", "win"),
        ("tie", "win", "win"),
        ("win", "lose", "tie"),
        ("tie", "tie", "tie"),
        ("lose", "tie", "lose"),
        ("lose", "lose", "lose"),
        ("unparsed", "win", "win"),
        ("unparsed", "unparsed", "tie"),
    ],
)
def test_verdict_rules(first: str, second: str, verdict: str) -> None:
    assert combine(first, second) == verdict


def test_winning_score_by_hand() -> None:
    # W = 3, L = 1, N = 5: (3 − 1) / 5 + 1 = 1.4
    assert winning_score(["win", "win", "win", "lose", "tie"]) == pytest.approx(1.4)


def test_both_orders_cancel_a_judge_that_always_prefers_assistant_one(tmp_path: Path) -> None:
    """A position-biased judge (always '8 5') would crown whichever answer is shown first; judged in both
    orders every pair is a tie."""
    server = scripted_server([(200, 0.0)])
    server.reply = "8 5\nThe first answer is better."
    client = LLMClient(OpenAIBackend(url(server), model="judge"))
    verdicts = judge_pairs(client, ["q1", "q2"], ["ours 1", "ours 2"], ["ref 1", "ref 2"])
    assert [(v.outcome_first, v.outcome_second, v.verdict) for v in verdicts] == [("win", "lose", "tie")] * 2
    assert summarize(verdicts)["judge_winning_score"] == pytest.approx(1.0) and client.calls == 4
    save_verdicts(tmp_path / "verdicts.jsonl", verdicts)
    rows = [json.loads(line) for line in (tmp_path / "verdicts.jsonl").read_text().splitlines()]
    assert rows[0]["ours_first"] == [8.0, 5.0] and rows[1]["verdict"] == "tie"
    server.shutdown()


def test_labelled_replies_count_in_the_unparsed_share() -> None:
    """Before, "Assistant 1: 8, Assistant 2: 7" parsed as (1, 8): a loss in one order, a win in the other,
    silently a tie. Now both orders are unparsed and the share says so."""
    server = scripted_server([(200, 0.0)])
    server.reply = "Assistant 1: 8, Assistant 2: 7\nreasons"
    client = LLMClient(OpenAIBackend(url(server), model="judge"))
    verdicts = judge_pairs(client, ["q1"], ["ours"], ["ref"])
    assert (verdicts[0].outcome_first, verdicts[0].outcome_second) == ("unparsed", "unparsed")
    assert verdicts[0].ours_first is None
    assert summarize(verdicts)["judge_unparsed_share"] == pytest.approx(1.0)
    server.shutdown()
