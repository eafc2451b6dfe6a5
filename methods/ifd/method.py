"""IFD (Cherry data) as a pipeline: data → pre-experience → score → select → tune → evaluate.

The scored arms (top / bottom k% by IFD) add the pre-experience and scoring stages to the shared
selection pipeline (data.instructions.selection); random k% and full data run the same data, tuning
and evaluation, at equal compute when ``train_steps`` is set.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

from data.config import LLMClientConfig, TuningConfig
from data.instructions.alpaca_eval import AlpacaEvalConfig
from data.instructions.leaderboard import LeaderboardConfig
from data.instructions.records import InstructionRecord
from data.instructions.selection import SelectionPipeline, read_jsonl, write_jsonl
from data.instructions.tuning import tune
from methods.ifd.config import IFDConfig
from methods.ifd.pre_experience import pick_pre_experience, prompt_embeddings, prompt_perplexities
from methods.ifd.scoring import IFDScore, ifd_scores, select
from runners.context import RunContext


def scoreable(scores: list[IFDScore]) -> list[IFDScore]:
    """Scores with answer tokens and finite losses: a record whose answer was cut to nothing has no IFD
    (the official data_by_IFD.py skips it) and must not sort as NaN."""
    return [
        s for s in scores if s.answer_tokens > 0 and math.isfinite(s.conditioned) and math.isfinite(s.direct)
    ]


class IFD(SelectionPipeline):
    def __init__(self, **cfg: Any) -> None:
        tuning = TuningConfig(**cfg.pop("tuning", {}))
        judge = LLMClientConfig(**cfg.pop("judge", {}))
        benchmarks = {
            "leaderboard": LeaderboardConfig(**cfg.pop("leaderboard", {})),
            "alpaca_eval": AlpacaEvalConfig(**cfg.pop("alpaca_eval", {})),
        }
        self.cfg = IFDConfig(**cfg, tuning=tuning, judge=judge, **benchmarks)

    def scoring_stages(self) -> list[str]:
        # random scores too: its size is the top arm's (the records IFD keeps × rate)
        return ["pre_experience", "score"] if self.cfg.arm != "full" else []

    def stage_reads(self) -> dict[str, tuple[str, ...]]:
        reads = super().stage_reads()
        pre = ("method.clusters", "method.per_cluster", "method.band_low", "method.band_high")
        pre += ("method.pre_epochs", "method.score_batch_size", "method.max_length")
        reads["pre_experience"] = ("seed", "model", "hardware", "method.tuning", "method.template", *pre)
        reads["score"] = (
            "model",
            "hardware",
            "method.max_length",
            "method.score_batch_size",
            "method.score_pack_tokens",
            "method.template",
        )
        reads["select"] += ("method.rate", "method.variant", "method.margin")
        return reads

    def stage_pre_experience(self, ctx: RunContext) -> dict[str, Any]:
        cfg, lm = self.cfg, self.trainable_model(ctx)  # on ctx.device
        train = self.records(ctx, "train")
        args = (lm.model, lm.tokenizer, train, cfg.score_batch_size, cfg.template, cfg.max_length)
        embeddings, perplexities = prompt_embeddings(*args), prompt_perplexities(*args)
        # in the official order: cluster by cluster, dataset order within each
        order = pick_pre_experience(
            embeddings, perplexities, cfg.clusters, cfg.per_cluster, ctx.seed, cfg.band_low, cfg.band_high
        )
        picked = [train[i] for i in order]
        pre_cfg = TuningConfig(**{**asdict(cfg.tuning), "epochs": cfg.pre_epochs})
        model = tune(
            lm.model,
            lm.tokenizer,
            picked,
            pre_cfg,
            ctx.seed,
            ctx.cfg.hardware.accelerator,
            precision=str(ctx.cfg.hardware.precision),
            template=cfg.template,
            hardware=ctx.cfg.hardware,
        )
        self.save_tuned(ctx, model, lm.tokenizer, "pre_experienced")
        return {"n_pre_experience": len(picked)}

    def stage_score(self, ctx: RunContext) -> dict[str, Any]:
        cfg = self.cfg
        model, tokenizer = self.adapter(ctx, "pre_experienced")  # on ctx.device
        records = self.records(ctx, "train")
        args = (cfg.max_length, cfg.score_batch_size, cfg.template)
        scores = ifd_scores(model, tokenizer, records, *args, pack=cfg.score_pack_tokens)
        rows = [{**asdict(s), "ifd": s.ifd, "ifd_ppl": s.ifd_ppl} for s in scores]
        write_jsonl(ctx.out_dir / "scores.jsonl", rows)
        scored = scoreable(scores)
        if not scored:
            return {"n_scored": 0}
        above = sum(s.ifd > 1 for s in scored) / len(scored)
        return {
            "n_scored": len(scored),
            "mean_ifd": sum(s.ifd for s in scored) / len(scored),
            "ifd_above_one_share": above,
        }

    def selected_ids(self, ctx: RunContext, train: list[InstructionRecord]) -> list[str]:
        """The top arm is Cherry's selection (official data_by_IFD.py: records without answer tokens
        skipped, IFD > margin dropped, the top int(len(kept) × rate)); the random and bottom arms take
        the same number of records, so the three arms differ only in which records they train on."""
        cfg = self.cfg
        rows = read_jsonl(ctx.out_dir / "scores.jsonl")
        scores = scoreable(
            [IFDScore(r["id"], r["conditioned"], r["direct"], r["answer_tokens"]) for r in rows]
        )
        top = select(scores, cfg.rate, cfg.variant, cfg.margin)
        if cfg.arm == "ifd_top":
            return top
        if cfg.arm == "random":  # a random sample of the whole data, of the top arm's size
            return self.random_ids(train, len(top), ctx.seed)
        # ifd_bottom: the lowest IFD, the answers the instruction explains best
        ordered = sorted(scores, key=lambda s: s.ifd if cfg.variant == "ifd" else s.ifd_ppl)
        return [s.id for s in ordered[: len(top)]]
