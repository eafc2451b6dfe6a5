"""AlpaGasus (arXiv 2307.08701) as a pipeline: data → grade → select → tune → evaluate.

Grading runs through the shared LLM client (any OpenAI-compatible endpoint or a local model, replies
cached on disk so an interrupted grading resumes); the data, equal-compute tuning and evaluation are the
shared selection pipeline's (data.instructions.selection), so the arms differ only in their data.
"""

from __future__ import annotations

import random
from dataclasses import asdict
from typing import Any

from data.config import LLMClientConfig, TuningConfig
from data.instructions.alpaca_eval import AlpacaEvalConfig
from data.instructions.leaderboard import LeaderboardConfig
from data.instructions.records import InstructionRecord
from data.instructions.selection import NothingSelected, SelectionPipeline, read_jsonl, write_jsonl
from data.llm.loader import cache_dir
from methods.alpagasus.config import AlpaGasusConfig
from methods.alpagasus.grading import Grade, detection_quality, grade, grade_by_score_logits
from runners.context import RunContext


class AlpaGasus(SelectionPipeline):
    def __init__(self, **cfg: Any) -> None:
        tuning = TuningConfig(**cfg.pop("tuning", {}))
        grader = LLMClientConfig(**cfg.pop("grader", {}))
        judge = LLMClientConfig(**cfg.pop("judge", {}))
        benchmarks = {
            "leaderboard": LeaderboardConfig(**cfg.pop("leaderboard", {})),
            "alpaca_eval": AlpacaEvalConfig(**cfg.pop("alpaca_eval", {})),
        }
        self.cfg = AlpaGasusConfig(**cfg, tuning=tuning, grader=grader, judge=judge, **benchmarks)

    def scoring_stages(self) -> list[str]:
        needs_grades = self.cfg.arm != "full" and not (self.cfg.arm == "random" and self.cfg.keep_share)
        return ["grade"] if needs_grades else []

    def stage_reads(self) -> dict[str, tuple[str, ...]]:
        reads = super().stage_reads()
        # the arm picks the grader (oracle_filtered's noisy oracle or the LLM)
        grader = ("method.grader", "method.grading", "method.dimension", "method.oracle_noise")
        # its summary (the grader's detection quality) is measured on the kept set: threshold, keep_share
        reads["grade"] = ("seed", "method.arm", *grader, "method.threshold", "method.keep_share")
        reads["select"] += ("method.threshold", "method.keep_share")
        return reads

    def grades(self, ctx: RunContext, train: list[InstructionRecord]) -> list[Grade]:
        cfg = self.cfg
        if cfg.arm == "oracle_filtered":  # the diagnostic: known labels, each flipped w.p. oracle_noise
            rng = random.Random(ctx.seed)
            flip = [rng.random() < cfg.oracle_noise for _ in train]
            return [
                Grade(r.id, 2.0 if r.corrupted != f else 5.0, "oracle")
                for r, f in zip(train, flip, strict=True)
            ]
        if cfg.grading == "score_logits":
            from data.llm.client import local_lm

            lm = local_lm(cfg.grader.model)
            return grade_by_score_logits(
                lm.model, lm.tokenizer, train, cfg.dimension, cfg.grader.batch_size, device=ctx.device
            )
        from data.llm.client import make_client

        cache = cfg.response_cache or cache_dir() / "llm_responses.sqlite"
        client = make_client(cfg.grader, cache)
        return grade(client, train, cfg.dimension, cfg.grader.max_tokens)

    def stage_grade(self, ctx: RunContext) -> dict[str, Any]:
        train = self.records(ctx, "train")
        grades = self.grades(ctx, train)
        write_jsonl(ctx.out_dir / "grades.jsonl", [asdict(g) for g in grades])
        if grades and all(g.score is None for g in grades):
            raise NothingSelected(
                f"the grader's {len(grades)} replies had no parsable score (method.grader.model="
                f"{self.cfg.grader.model}, method.grading={self.cfg.grading}); first reply: "
                f"{grades[0].reply[:200]!r}. A reply must start with the score alone on its first line "
                f"(every reply is in {ctx.out_dir / 'grades.jsonl'}). Use a stronger grader, or with a "
                "local grader method.grading=score_logits; cached replies are not requested again."
            )
        quality = detection_quality(grades, train, self.cfg.threshold, self.kept_ids(grades))
        # records whose grading request the endpoint rejected (kept in grades.jsonl, asked again on re-run)
        return {f"grader_{k}": v for k, v in quality.items()} | {
            "grader_rejected": float(sum(g.error is not None for g in grades))
        }

    def why_nothing_selected(self, ctx: RunContext, train: list[InstructionRecord]) -> str:
        path = ctx.out_dir / "grades.jsonl"
        if not path.exists():
            return "no grades"
        scores = [g["score"] for g in read_jsonl(path) if g["score"] is not None]
        best = f"the best of the {len(scores)} parsed scores is {max(scores):g}" if scores else "none parsed"
        return (
            f"no grade reached method.threshold={self.cfg.threshold} ({best}); lower method.threshold "
            "or keep the top share with method.keep_share"
        )

    def kept_ids(self, grades: list[Grade]) -> list[str]:
        """Score ≥ threshold (the paper), or the top keep_share by score (ties broken by id)."""
        cfg = self.cfg
        graded = [g for g in grades if g.score is not None]
        if cfg.keep_share is None:
            return [g.id for g in graded if g.score >= cfg.threshold]
        n = max(1, round(cfg.keep_share * len(grades)))
        return [g.id for g in sorted(graded, key=lambda g: (-g.score, g.id))[:n]]

    def selected_ids(self, ctx: RunContext, train: list[InstructionRecord]) -> list[str]:
        cfg = self.cfg
        if cfg.arm == "random":
            if cfg.keep_share:
                n = max(1, round(cfg.keep_share * len(train)))
            else:  # the same size as the grader's selection
                n = len(self.kept_ids([Grade(**g) for g in read_jsonl(ctx.out_dir / "grades.jsonl")]))
            return self.random_ids(train, n, ctx.seed)
        return self.kept_ids([Grade(**g) for g in read_jsonl(ctx.out_dir / "grades.jsonl")])
