"""AlpaGasus grading (arXiv 2307.08701, Sec. 2): an LLM rates each response's accuracy 0–5 and the
data is filtered at a threshold (4.5 in the paper: 9,229 of Alpaca's 52k).

The prompt keeps the paper's structure and fields in our own words: a system message asking for
feedback on an assistant's answer; the triplet ``###Instruction:`` / ``### Input:`` (always present,
even empty) / ``### Response:``; then the request for an accuracy score alone on the first line and an
explanation after it. Parsing reads the first non-empty line only; anything else is "unparsed" (never a
crash) — the official parser takes the first character after 'Score:', usually a space.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from data.instructions.records import InstructionRecord
from data.llm.client import ChatRequest, LLMClient

SYSTEM = (
    "We would like your feedback on how an AI assistant responded to the instruction and input shown below."
)
_RATE = (
    "Rate the {dimension} of the response on a scale from 0 to 5, where a higher score means a better "
    "response. Write the score alone on the first line, then explain your rating on the following "
    "lines. Be objective and avoid any bias."
)
REQUEST = {d: _RATE.format(dimension=d.upper()) for d in ("accuracy", "helpfulness")}
# An optional label ("Score:", "Rating:", "Accuracy:"), the number, an optional "/5" or "out of 5".
_SCORE = re.compile(r"^\W*(?:[a-z ]{1,20}:\W*)?(\d+(?:\.\d+)?)\s*(?:/\s*5|out of 5)?\W*$", re.IGNORECASE)


def grading_request(
    record: InstructionRecord, dimension: str = "accuracy", max_tokens: int = 256
) -> ChatRequest:
    user = (
        f"###Instruction:\n{record.instruction}\n\n### Input:\n{record.input}\n\n"
        f"### Response:\n{record.output}\n\n{REQUEST[dimension]}"
    )
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]
    return ChatRequest(messages=messages, temperature=0.0, max_tokens=max_tokens)


def parse_grade(text: str) -> float | None:
    """The score on the first non-empty line ("4.5", "Score: 4", "Rating: 5", "**5**", "3/5", "4 out of 5"),
    if it is in [0, 5]; a line with other words around the number is unparsed."""
    line = next((ln for ln in text.splitlines() if ln.strip()), "")
    match = _SCORE.match(line.strip())
    if match is None:
        return None
    score = float(match.group(1))
    return score if 0 <= score <= 5 else None


@dataclass(frozen=True)
class Grade:
    id: str
    score: float | None  # None: the grader's reply could not be parsed (or the request was rejected)
    reply: str
    error: str | None = None  # the endpoint rejected this record's request (HTTP 400, ...): no reply


def grade(
    client: LLMClient,
    records: Sequence[InstructionRecord],
    dimension: str = "accuracy",
    max_tokens: int = 256,
) -> list[Grade]:
    """One grade per record; a record whose request the endpoint rejected (400) keeps that error and
    no score (client.errors), and the others go on."""
    replies = client.complete([grading_request(r, dimension, max_tokens) for r in records])
    errors = getattr(client, "errors", {})
    return [
        Grade(r.id, None if k in errors else parse_grade(text), text, errors.get(k))
        for k, (r, text) in enumerate(zip(records, replies, strict=True))
    ]


def grade_by_score_logits(
    model: Any,
    tokenizer: Any,
    records: Sequence[InstructionRecord],
    dimension: str = "accuracy",
    batch_size: int = 8,
    device: Any = None,
) -> list[Grade]:
    """A named variant, not the paper's parser: the same grading prompt, one forward pass, and the
    expected score Σ_k k·p(k) over the next-token probabilities of "0".."5" at the start of the reply.

    A 135M grader rarely writes a bare score on its first line (the paper's format), so the generated
    grades are mostly unparsed; reading the score distribution directly keeps every record graded.
    Local models only (an HTTP endpoint would need ``logprobs``). ``device`` (the runner's,
    ``ctx.device``) is where the grader is moved and runs; None: where it is.
    """
    import torch

    if device is not None:
        model = model.to(device)

    digits = [tokenizer.convert_tokens_to_ids(str(k)) for k in range(6)]
    if len(set(digits)) != 6 or tokenizer.unk_token_id in digits:
        raise ValueError("grading=score_logits needs a tokenizer with single tokens for the digits 0-5")
    values = torch.arange(6, dtype=torch.float32)
    grades: list[Grade] = []
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    try:
        for start in range(0, len(records), batch_size):
            chunk = records[start : start + batch_size]
            texts = [
                tokenizer.apply_chat_template(
                    grading_request(r, dimension).messages, tokenize=False, add_generation_prompt=True
                )
                for r in chunk
            ]
            batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
            with torch.no_grad():
                logits = model(**batch.to(model.device), logits_to_keep=1).logits[:, -1]
            probs = logits[:, digits].float().softmax(-1).cpu()
            for record, p in zip(chunk, probs, strict=True):
                reply = " ".join(f"p({k})={v:.3f}" for k, v in enumerate(p.tolist()))
                grades.append(Grade(record.id, float(p @ values), reply))
    finally:
        tokenizer.padding_side = side
    return grades


def keep(grades: Sequence[Grade], threshold: float = 4.5) -> list[str]:
    """Ids graded at or above the threshold (an unparsed grade is not kept)."""
    return [g.id for g in grades if g.score is not None and g.score >= threshold]


def detection_quality(
    grades: Sequence[Grade],
    records: Sequence[InstructionRecord],
    threshold: float = 4.5,
    kept: Sequence[str] | None = None,
) -> dict:
    """How well the filter catches the known-bad responses: a record is flagged when it is not kept
    (``kept``, or score ≥ threshold). Precision = bad among flagged, recall = flagged among bad; AUROC
    ranks the scores themselves (0.5 is chance; unparsed grades count as the lowest score)."""
    bad = {r.id for r in records if r.corrupted}
    kept = keep(grades, threshold) if kept is None else kept
    flagged = {g.id for g in grades} - set(kept)
    caught = len(bad & flagged)
    return {
        "precision": caught / len(flagged) if flagged else 0.0,
        "recall": caught / len(bad) if bad else 0.0,
        "kept_share": 1 - len(flagged) / len(grades) if grades else 0.0,
        "unparsed_share": sum(g.score is None for g in grades) / len(grades) if grades else 0.0,
        "auroc": bad_detection_auroc(grades, bad),
    }


def bad_detection_auroc(grades: Sequence[Grade], bad: set[str]) -> float:
    """P(a bad record scores lower than a clean one), ties counted half (Mann–Whitney)."""
    low = -1.0  # an unparsed grade ranks below every score
    bad_scores = [g.score if g.score is not None else low for g in grades if g.id in bad]
    clean_scores = [g.score if g.score is not None else low for g in grades if g.id not in bad]
    if not bad_scores or not clean_scores:
        return float("nan")
    wins = sum((b < c) + 0.5 * (b == c) for b in bad_scores for c in clean_scores)
    return wins / (len(bad_scores) * len(clean_scores))
