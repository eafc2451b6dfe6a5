"""AlpaGasus grading: robust parsing, filtering, and detection quality against the known-bad records."""

from __future__ import annotations

import pytest

from data.instructions.generated import generate
from data.instructions.records import InstructionRecord
from data.llm.client import LLMClient, LocalBackend
from data.llm.loader import load_causal_lm, offline_model
from methods.alpagasus.grading import Grade, detection_quality, grade, grading_request, keep, parse_grade


@pytest.mark.parametrize(
    ("reply", "score"),
    [
        ("4.5\nThe answer is correct.", 4.5),
        ("Score: 4", 4.0),
        ("**5**\nPerfect.", 5.0),
        ("3/5", 3.0),
        ("Rating: 5\n\n### Explanation: ...", 5.0),
        ("Accuracy: 4 out of 5", 4.0),
        ("\n\n2\n", 2.0),
        ("The response is accurate. 5", None),  # text before the score: unparsed, as the spec asks
        ("7", None),  # outside the 0–5 scale
        ("", None),
    ],
)
def test_parse_grade(reply: str, score: float | None) -> None:
    assert parse_grade(reply) == score


def test_prompt_has_the_papers_fields_even_with_empty_input() -> None:
    request = grading_request(InstructionRecord("a", "Add 2 and 2.", "", "4"))
    user = request.messages[1]["content"]
    assert "###Instruction:\nAdd 2 and 2." in user and "### Input:\n\n" in user and "### Response:\n4" in user
    assert "ACCURACY" in user and request.temperature == 0.0


def test_filtering_and_detection_quality_by_hand() -> None:
    records = [
        InstructionRecord("g1", "i", "", "o"),
        InstructionRecord("g2", "i", "", "o"),
        InstructionRecord("b1", "i", "", "x", quality="wrong", reference="o"),
        InstructionRecord("b2", "i", "", "x", quality="truncated", reference="o"),
    ]
    grades = [Grade("g1", 5.0, ""), Grade("g2", 3.0, ""), Grade("b1", 1.0, ""), Grade("b2", None, "??")]
    assert keep(grades) == ["g1"]
    # flagged = {g2, b1, b2}; bad = {b1, b2}: precision 2/3, recall 2/2
    quality = detection_quality(grades, records)
    assert quality["precision"] == pytest.approx(2 / 3) and quality["recall"] == pytest.approx(1.0)
    assert quality["kept_share"] == pytest.approx(0.25) and quality["unparsed_share"] == pytest.approx(0.25)


def test_smollm2_grades_without_crashing() -> None:
    lm = load_causal_lm(offline_model("smollm2_135m"))
    client = LLMClient(LocalBackend(lm.model, lm.tokenizer, identity="smollm2", batch_size=4))
    records = generate(40, seed=1)[:4]
    grades = grade(client, records, max_tokens=12)  # the score line is all this test needs
    assert [g.id for g in grades] == [r.id for r in records] and client.calls == 4
    assert all(g.score is None or 0 <= g.score <= 5 for g in grades)
