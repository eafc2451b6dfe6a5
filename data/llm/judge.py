"""The pairwise judge of AlpaGasus (arXiv 2307.08701, also IFD's evaluation): an LLM scores two answers
in one prompt, and every pair is judged in both orders to cancel position bias.

Per pair: Win if ours wins both orders, or wins one and ties the other; Lose symmetrically; Tie
otherwise. Winning score = (W − L) / N + 1 (1 is parity, 2 all wins, 0 all losses).
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from data.llm.client import ChatRequest, LLMClient
from runners.atomic import write_atomic

SYSTEM = "You are a careful, impartial reviewer comparing two AI assistants' answers to the same question."
TASK = (
    "Rate how helpful, relevant, accurate and detailed each answer is, each on a scale from 1 to 10, "
    "higher is better. On the first line write only the two scores separated by a space, Assistant 1's "
    "first. Then explain your ratings in a few sentences. Judge the content only: the order in which the "
    "answers appear must not change your ratings."
)
_SEPARATORS = re.compile(r"[,\s]+")


def judge_request(question: str, first: str, second: str, max_tokens: int = 128) -> ChatRequest:
    user = (
        f"[Question]\n{question}\n\n[Answer of Assistant 1]\n{first}\n\n"
        f"[Answer of Assistant 2]\n{second}\n\n[Task]\n{TASK}"
    )
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]
    return ChatRequest(messages=messages, temperature=0.0, max_tokens=max_tokens)


def parse_scores(text: str) -> tuple[float, float] | None:
    """The two scores if the reply's first line holds exactly two numbers and nothing else, else None
    (counted in the unparsed share).

    As the official ``parse_score`` (gpt4life/alpagasus evaluation/eval.py, the Vicuna ``eval_gpt_review``
    rule): the first line, commas read as spaces, must split into exactly two floats; anything else is an
    error. So labelled replies ("Assistant 1: 8, Assistant 2: 7", "8/10 and 7/10") are unparsed, never
    read as (1, 8) or (8, 10). Two deliberate leniencies, neither of which can misread a score: leading
    blank lines are skipped and runs of separators count as one (the official split on a single space
    rejects "8, 7" only because the comma becomes a second space). Non-finite values are rejected.
    """
    first_line = text.strip().split("\n", 1)[0]
    fields = [f for f in _SEPARATORS.split(first_line.strip()) if f]
    if len(fields) != 2:
        return None
    try:
        scores = float(fields[0]), float(fields[1])
    except ValueError:
        return None
    return scores if all(math.isfinite(x) for x in scores) else None


def outcome(ours: float, theirs: float) -> str:
    return "win" if ours > theirs else "lose" if ours < theirs else "tie"


def combine(first: str, second: str) -> str:
    """The pair's verdict from the two orders' outcomes (an unparsed order counts as a tie)."""
    outcomes = [o if o in ("win", "lose") else "tie" for o in (first, second)]
    if "win" in outcomes and "lose" not in outcomes:
        return "win"
    if "lose" in outcomes and "win" not in outcomes:
        return "lose"
    return "tie"


def winning_score(verdicts: Sequence[str]) -> float:
    counts = Counter(verdicts)
    return (counts["win"] - counts["lose"]) / len(verdicts) + 1.0


@dataclass
class Verdict:
    question: str
    ours_first: list[float] | None  # (ours, theirs) scores with ours shown as Assistant 1
    ours_second: list[float] | None  # (theirs, ours) scores with ours shown as Assistant 2
    outcome_first: str  # win | tie | lose | unparsed
    outcome_second: str
    verdict: str  # win | tie | lose


def judge_pairs(
    client: LLMClient,
    questions: Sequence[str],
    ours: Sequence[str],
    theirs: Sequence[str],
    max_tokens: int = 128,
) -> list[Verdict]:
    """Judge every (ours, theirs) answer pair in both orders; 2N cached, concurrent judge calls."""
    requests = [judge_request(q, a, b, max_tokens) for q, a, b in zip(questions, ours, theirs, strict=True)]
    requests += [judge_request(q, b, a, max_tokens) for q, a, b in zip(questions, ours, theirs, strict=True)]
    replies = client.complete(requests)
    n = len(questions)
    verdicts = []
    for i, question in enumerate(questions):
        first, second = parse_scores(replies[i]), parse_scores(replies[n + i])
        o1 = "unparsed" if first is None else outcome(first[0], first[1])
        o2 = "unparsed" if second is None else outcome(second[1], second[0])
        verdicts.append(
            Verdict(question, first and list(first), second and list(second), o1, o2, combine(o1, o2))
        )
    return verdicts


def summarize(verdicts: Sequence[Verdict]) -> dict[str, float]:
    counts = Counter(v.verdict for v in verdicts)
    unparsed = sum((v.outcome_first == "unparsed") + (v.outcome_second == "unparsed") for v in verdicts)
    return {
        "judge_win": float(counts["win"]),
        "judge_tie": float(counts["tie"]),
        "judge_lose": float(counts["lose"]),
        "judge_winning_score": winning_score([v.verdict for v in verdicts]),
        "judge_unparsed_share": unparsed / (2 * len(verdicts)),
    }


def save_verdicts(path: str | Path, verdicts: Sequence[Verdict]) -> None:
    write_atomic(path, lambda f: f.writelines(json.dumps(asdict(v)) + "\n" for v in verdicts))
