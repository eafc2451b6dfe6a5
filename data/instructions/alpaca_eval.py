"""AlpacaEval (tatsu-lab/alpaca_eval): the tuned model answers its 805 instructions and a judge compares
each answer with the set's reference answer (text-davinci-003's, the ``output`` field); the win rate is
what the IFD paper reports (tianyi-lab/Cherry_LLM README, "AlpacaEval Leaderboard": 34.74 for 5% Alpaca
vs 26.46 for Alpaca, LLaMA-7B).

The set is the hub file ``alpaca_eval.json`` (``instruction``, ``output``, ``generator``, ``dataset``), read
by hub id (``tatsu-lab/alpaca_eval``), a local folder in the hub repo's layout, a JSON file or a URL.

Judge: the project's pairwise judge (data.llm.judge; GPT-4 at scale=paper) in both answer orders, with the
papers' combination rule (data.llm.judge.combine), and ties counted half as AlpacaEval counts them:
win rate = (W + T/2) / N. Not AlpacaEval 1's own annotator (``alpaca_eval_gpt4``, one order drawn at
random per item, its own ranking prompt): that prompt is the library's text, and a paraphrase would not
be its annotator either, while both orders remove the position bias that AlpacaEval only averages out.
The answers are also written in AlpacaEval's ``model_outputs`` format (``alpaca_eval_outputs.json``) for
the ``alpaca_eval`` CLI. Its default today is AlpacaEval 2 (GPT-4 Turbo reference and annotator); the IFD
paper's 34.74 / 26.46 are AlpacaEval 1 numbers, which need ``IS_ALPACA_EVAL_2=False`` (the
``alpaca_eval_gpt4`` annotator against text-davinci-003's answers).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data.instructions.test_sets import TestSetError, read_text
from data.llm.judge import summarize

HUB_FILE = "alpaca_eval.json"  # the hub repo's file (its loading script reads it for the "eval" split)
FIELDS = ("instruction", "output", "generator", "dataset")


@dataclass
class AlpacaEvalConfig:
    # a hub id, a folder holding alpaca_eval.json, a .json path or a URL; null (the default) skips the stages
    source: str | None = None
    limit: int | None = None  # the first N instructions (None: all 805)

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"method.alpaca_eval.limit={self.limit} must be >= 1 or null")


def _local_or_hub_file(source: str) -> str:
    """The path or URL of the JSON file ``source`` names (a hub id is downloaded to the hub cache)."""
    if source.startswith(("http://", "https://")):
        return source
    path = Path(source).expanduser()
    if path.is_dir():
        path = path / HUB_FILE
        if not path.is_file():
            raise TestSetError(f"the folder {source} holds no {HUB_FILE}")
        return str(path)
    if path.suffix.lower() == ".json" or path.exists() or source.startswith((".", "/", "~")):
        return str(path)
    from huggingface_hub import hf_hub_download

    try:
        return hf_hub_download(repo_id=source, filename=HUB_FILE, repo_type="dataset")
    except Exception as ex:  # offline, unknown repo: one message naming the key and the ways out
        raise TestSetError(
            f"{HUB_FILE} of the hub dataset {source} could not be had ({ex}); give a local folder in the "
            "hub repo's layout, a .json file or a URL"
        ) from ex


def load_alpaca_eval(source: str, limit: int | None = None) -> list[dict[str, str]]:
    """The first ``limit`` items of the set (all when None), each with the four fields of the hub file."""
    where = _local_or_hub_file(source)
    try:
        items = json.loads(read_text(where))
    except json.JSONDecodeError as ex:
        raise TestSetError(f"{where}: not JSON ({ex.msg})") from ex
    if not isinstance(items, list) or not items:
        raise TestSetError(f"{where}: expected a non-empty JSON list of {{{', '.join(FIELDS)}}} objects")
    for k, item in enumerate(items):
        if not isinstance(item, dict) or not all(isinstance(item.get(f), str) for f in FIELDS[:2]):
            keys = ", ".join(sorted(item)) if isinstance(item, dict) else type(item).__name__
            raise TestSetError(f"{where}, item {k}: an AlpacaEval item has instruction, output; got {keys}")
    return [{f: str(item.get(f, "")) for f in FIELDS} for item in items[:limit]]


def model_outputs(items: Sequence[dict[str, str]], answers: Sequence[str], generator: str) -> list[dict]:
    """The answers in AlpacaEval's ``model_outputs`` format (what its CLI and leaderboard read)."""
    return [
        {"instruction": it["instruction"], "output": answer, "generator": generator, "dataset": it["dataset"]}
        for it, answer in zip(items, answers, strict=True)
    ]


def win_rate(verdicts: Sequence[Any]) -> dict[str, float]:
    """``alpaca_eval_win_rate`` (a fraction: wins + half the ties, over N), the W/T/L counts and the share of
    judge replies that did not parse. A pair whose replies parsed in neither order expresses no preference
    and is left out of N, as AlpacaEval drops non-preferences (metrics/helpers.py, describe_head2head)
    rather than counting them as ties."""
    judged = [v for v in verdicts if not (v.outcome_first == v.outcome_second == "unparsed")]
    counts = {k: sum(v.verdict == k for v in judged) for k in ("win", "tie", "lose")}
    n = len(judged)
    out = {f"alpaca_eval_{k}": float(c) for k, c in counts.items()}
    out["alpaca_eval_n"] = float(n)
    if verdicts:
        out["alpaca_eval_unparsed_share"] = summarize(verdicts)["judge_unparsed_share"]
    if n:
        out["alpaca_eval_win_rate"] = (counts["win"] + 0.5 * counts["tie"]) / n
    return out
