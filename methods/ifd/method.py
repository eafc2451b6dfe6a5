"""IFD (Cherry data) as a pipeline: data → pre-experience → score → select → tune → evaluate.

The scored arms (top / bottom k% by IFD) add the pre-experience and scoring stages to the shared
selection pipeline (data.instructions.selection); random k% and full data run the same data, tuning
and evaluation, at equal compute when ``train_steps`` is set.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from data.config import TuningConfig
from data.instructions.records import InstructionRecord
from data.instructions.selection import SelectionPipeline, read_jsonl, write_jsonl
from data.instructions.tuning import tune
from methods.ifd.config import IFDConfig
from methods.ifd.pre_experience import pick_pre_experience, prompt_embeddings, prompt_perplexities
from methods.ifd.scoring import IFDScore, ifd_scores, select
from runners.context import RunContext


class IFD(SelectionPipeline):
    def __init__(self, **cfg: Any) -> None:
        tuning = TuningConfig(**cfg.pop("tuning", {}))
        self.cfg = IFDConfig(**cfg, tuning=tuning)

    def scoring_stages(self) -> list[str]:
        return ["pre_experience", "score"] if self.cfg.arm in ("ifd_top", "ifd_bottom") else []

    def stage_pre_experience(self, ctx: RunContext) -> dict[str, Any]:
        cfg, lm = self.cfg, self.base_model(ctx)
        train = self.records(ctx, "train")
        embeddings = prompt_embeddings(lm.model, lm.tokenizer, train, cfg.score_batch_size)
        perplexities = prompt_perplexities(lm.model, lm.tokenizer, train, cfg.score_batch_size)
        picked = [
            train[i]
            for i in pick_pre_experience(embeddings, perplexities, cfg.clusters, cfg.per_cluster, ctx.seed)
        ]
        pre_cfg = TuningConfig(**{**asdict(cfg.tuning), "epochs": cfg.pre_epochs})
        model = tune(lm.model, lm.tokenizer, picked, pre_cfg, ctx.seed, ctx.cfg.hardware.accelerator)
        model.save_pretrained(str(ctx.out_dir / "pre_experienced"))
        return {"n_pre_experience": len(picked)}

    def stage_score(self, ctx: RunContext) -> dict[str, Any]:
        cfg = self.cfg
        model, tokenizer = self.adapter(ctx, "pre_experienced")
        scores = ifd_scores(
            model, tokenizer, self.records(ctx, "train"), cfg.max_length, cfg.score_batch_size
        )
        rows = [{**asdict(s), "ifd": s.ifd, "ifd_ppl": s.ifd_ppl} for s in scores]
        write_jsonl(ctx.out_dir / "scores.jsonl", rows)
        above = sum(s.ifd > 1 for s in scores) / len(scores)
        return {"mean_ifd": sum(s.ifd for s in scores) / len(scores), "ifd_above_one_share": above}

    def selected_ids(self, ctx: RunContext, train: list[InstructionRecord]) -> list[str]:
        cfg = self.cfg
        n = max(1, int(len(train) * cfg.rate))
        if cfg.arm == "random":
            return self.random_ids(train, n, ctx.seed)
        rows = read_jsonl(ctx.out_dir / "scores.jsonl")
        scores = [IFDScore(r["id"], r["conditioned"], r["direct"], r["answer_tokens"]) for r in rows]
        if cfg.arm == "ifd_top":
            return select(scores, cfg.rate, cfg.variant, cfg.margin)
        # ifd_bottom: the lowest IFD, the answers the instruction explains best
        ordered = sorted(scores, key=lambda s: s.ifd if cfg.variant == "ifd" else s.ifd_ppl)
        return [s.id for s in ordered[:n]]
