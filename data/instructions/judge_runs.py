"""The pairwise judge over a finished sweep: every arm's held-out answers against a reference arm's
(the full-data model, as in AlpaGasus and IFD), same seed, both orders.

    python -m data.instructions.judge_runs multirun/alpagasus_filter/small --reference full

Verdicts go to ``<run>/judge_vs_<reference>.jsonl``; the counts, the winning score and the judge's
agreement with exact match join the run's ``results.json`` metrics, so ``runners.report`` tables them.
Judge replies are cached on disk, so an interrupted or repeated judging makes no repeated calls.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from data.config import LLMClientConfig
from data.instructions.records import load_records
from data.instructions.selection import read_jsonl
from data.instructions.template import question_text
from data.instructions.test_sets import SCHEMAS
from data.llm.judge import Verdict, judge_pairs, save_verdicts, summarize
from runners.results import RESULTS_FILE, merge_metrics, read_results

log = logging.getLogger("reprolab")


def dotted(record: dict[str, Any], key: str) -> Any:
    node: Any = record["config"]
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def em_agreement(verdicts: Sequence[Verdict], ours_hit: Sequence[bool], theirs_hit: Sequence[bool]) -> dict:
    """On the items where exactly one answer is an exact match, the share the judge decides for it
    (a tie counts as a miss): how far the judge can be trusted where the truth is known."""
    decisive = [
        (v.verdict, a)
        for v, a, b in zip(verdicts, ours_hit, theirs_hit, strict=True)
        if a is not None and b is not None and a != b  # None: an open-ended test item, no reference
    ]
    right = sum(verdict == ("win" if ours else "lose") for verdict, ours in decisive)
    out = {"judge_em_decisive": float(len(decisive))}
    if decisive:  # no decisive item: no agreement to report (not a NaN in the table)
        out["judge_em_agreement"] = right / len(decisive)
    return out


def per_test_set(verdicts: Sequence[Verdict], families: Sequence[str | None]) -> dict[str, float]:
    """W/T/L and the winning score of each open-ended test set (the papers' per-set bars):
    ``judge_<set>_win`` ... ``judge_<set>_winning_score``; generated families are pooled only."""
    out: dict[str, float] = {}
    for name in SCHEMAS:
        mine = [v for v, f in zip(verdicts, families, strict=True) if f == name]
        if mine:
            out.update({f"judge_{name}_{k[len('judge_') :]}": v for k, v in summarize(mine).items()})
    return out


def run_judge_config(sweep_dir: Path) -> LLMClientConfig | None:
    """The judge the runs' config names (``method.judge``), from the first completed run's results."""
    for path in sorted(Path(sweep_dir).rglob(RESULTS_FILE)):
        record = read_results(path)
        node = dotted(record, "method.judge") if record else None
        if isinstance(node, dict):
            return LLMClientConfig(**node)
    return None


def questions(run_dir: Path, predictions: dict[str, dict]) -> dict[str, str]:
    """Each item's question: from the predictions, or the run's saved held-out records (older runs)."""
    if all("question" in row for row in predictions.values()):
        return {i: row["question"] for i, row in predictions.items()}
    return {r.id: question_text(r) for r in load_records(str(run_dir / "eval.jsonl"))}


def judge_sweep(
    sweep_dir: Path,
    client: Any,
    reference: str,
    arm_key: str = "method.arm",
    max_tokens: int = 32,
    limit: int | None = None,
) -> dict[str, dict[str, float]]:
    """Judge every completed run against the reference-arm run with the same seed and method, on the
    first ``limit`` held-out items (all when None)."""
    runs = []
    for path in sorted(Path(sweep_dir).rglob(RESULTS_FILE)):
        record = read_results(path)
        if record and record.get("status") == "completed" and (path.parent / "predictions.jsonl").exists():
            runs.append((path.parent, record))
    refs = {(r["method"], r["seed"]): d for d, r in runs if str(dotted(r, arm_key)) == reference}
    out = {}
    for run_dir, record in runs:
        ref_dir = refs.get((record["method"], record["seed"]))
        if ref_dir is None or ref_dir == run_dir:
            continue
        ours = {row["id"]: row for row in read_jsonl(run_dir / "predictions.jsonl")}
        theirs = {row["id"]: row for row in read_jsonl(ref_dir / "predictions.jsonl")}
        ids = [i for i in ours if i in theirs][:limit]
        asked = questions(run_dir, ours)
        verdicts = judge_pairs(
            client,
            [asked[i] for i in ids],
            [ours[i]["answer"] for i in ids],
            [theirs[i]["answer"] for i in ids],
            max_tokens=max_tokens,
        )
        save_verdicts(run_dir / f"judge_vs_{reference}.jsonl", verdicts)
        metrics = {
            **summarize(verdicts),
            **em_agreement(verdicts, [ours[i].get("hit") for i in ids], [theirs[i].get("hit") for i in ids]),
            **per_test_set(verdicts, [ours[i].get("family") for i in ids]),
        }
        merge_metrics(run_dir, metrics, replace_prefix="judge_")
        out[str(run_dir)] = metrics
        log.info("%s vs %s: %s", run_dir.name, reference, {k: round(v, 3) for k, v in metrics.items()})
    return out


def main(argv: Sequence[str] | None = None) -> None:
    from data.cache import cache_dir
    from data.llm.client import make_client

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--reference", default="full", help="the arm every other arm is judged against")
    parser.add_argument("--arm-key", default="method.arm", help="the config key that names the arm")
    # Unset flags take the runs' own judge (method.judge: GPT-4 at scale=paper), else the local SmolLM2.
    parser.add_argument("--backend", default=None, choices=("local", "openai"))
    parser.add_argument("--model", default=None, help="offline name, hub name or endpoint model")
    parser.add_argument("--base-url", default=None, help="OpenAI-compatible endpoint (backend openai)")
    parser.add_argument("--api-key-env", default=None)
    parser.add_argument("--max-tokens", type=int, default=None, help="the scores are on the first line")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--limit", type=int, default=None, help="judge the first N held-out items only")
    parser.add_argument("--cache", type=Path, default=None, help="response cache (default: shared cache)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = run_judge_config(args.sweep_dir) or LLMClientConfig(max_tokens=32)
    flags = {
        "backend": args.backend,
        "model": args.model,
        "base_url": args.base_url,
        "api_key_env": args.api_key_env,
        "max_tokens": args.max_tokens,
        "batch_size": args.batch_size,
    }
    cfg = dataclasses.replace(cfg, **{k: v for k, v in flags.items() if v is not None})
    log.info("judge: %s %s at %s", cfg.backend, cfg.model, cfg.base_url or "(local)")
    client = make_client(cfg, args.cache or cache_dir() / "llm_responses.sqlite")
    results = judge_sweep(args.sweep_dir, client, args.reference, args.arm_key, cfg.max_tokens, args.limit)
    print(f"judged {len(results)} runs against arm {args.reference!r}; backend calls: {client.calls}")


if __name__ == "__main__":
    main()
