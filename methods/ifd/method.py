"""IFD (Cherry data) as a pipeline: data → pre-experience → score → select → tune → evaluate.

Each stage leaves its artefacts in the run dir (records, the pre-experienced adapter, scores, the
selected ids, the tuned adapter, predictions); a re-run skips the stages already done. The comparison
arms (random k%, bottom k% by IFD, full data) run through the same stages, at equal compute when
``train_steps`` is set.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import asdict
from typing import Any

from omegaconf import OmegaConf

from data.config import TuningConfig
from data.instructions.generated import composition, exact_match, generate, generate_eval
from data.instructions.records import InstructionRecord, load_records, save_records
from data.instructions.tuning import generate_answers, tune
from data.llm.loader import load_causal_lm
from methods.ifd.config import IFDConfig
from methods.ifd.pre_experience import pick_pre_experience, prompt_embeddings, prompt_perplexities
from methods.ifd.scoring import ifd_scores, select
from runners.atomic import write_json_atomic
from runners.context import RunContext
from runners.contract import PipelineMethod, Stage

log = logging.getLogger("reprolab")


class IFD(PipelineMethod):
    def __init__(self, **cfg: Any) -> None:
        tuning = TuningConfig(**cfg.pop("tuning", {}))
        self.cfg = IFDConfig(**cfg, tuning=tuning)

    # ------------------------------------------------------------------ helpers shared by the stages

    def base_model(self, ctx: RunContext) -> Any:
        return load_causal_lm(OmegaConf.to_object(ctx.cfg.model))

    def records(self, ctx: RunContext, name: str) -> list[InstructionRecord]:
        return load_records(str(ctx.out_dir / f"{name}.jsonl"))

    def adapter(self, ctx: RunContext, name: str) -> tuple[Any, Any]:
        """The base model with the LoRA adapter saved by stage ``name`` (or fully tuned weights)."""
        lm = self.base_model(ctx)
        path = ctx.out_dir / name
        if self.cfg.tuning.mode == "lora":
            from peft import PeftModel

            return PeftModel.from_pretrained(lm.model, str(path)).eval(), lm.tokenizer
        return type(lm.model).from_pretrained(str(path)).eval(), lm.tokenizer

    # ------------------------------------------------------------------ stages

    def stage_data(self, ctx: RunContext) -> dict[str, Any]:
        cfg = self.cfg
        if cfg.data == "generated":
            train = generate(cfg.n_train, seed=ctx.seed, corrupt_share=cfg.corrupt_share)
            held_out = generate_eval(cfg.eval_per_family, seed=ctx.seed)
        else:  # real data has no held-out checkable answers: the judge evaluates it
            train, held_out = load_records(cfg.data, limit=cfg.n_train), []
        save_records(ctx.out_dir / "train.jsonl", train)
        save_records(ctx.out_dir / "eval.jsonl", held_out)
        return {
            "n_train": len(train),
            "n_eval": len(held_out),
            "train_corrupted_share": composition(train)["corrupted_share"],
        }

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
        rows = [
            {
                "id": s.id,
                "conditioned": s.conditioned,
                "direct": s.direct,
                "ifd": s.ifd,
                "ifd_ppl": s.ifd_ppl,
                "answer_tokens": s.answer_tokens,
            }
            for s in scores
        ]
        (ctx.out_dir / "scores.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        above = sum(s.ifd > 1 for s in scores) / len(scores)
        return {"mean_ifd": sum(s.ifd for s in scores) / len(scores), "ifd_above_one_share": above}

    def stage_select(self, ctx: RunContext) -> dict[str, Any]:
        cfg, train = self.cfg, self.records(ctx, "train")
        n = max(1, int(len(train) * cfg.rate))
        if cfg.arm == "full":
            ids = [r.id for r in train]
        elif cfg.arm == "random":
            ids = random.Random(ctx.seed).sample([r.id for r in train], n)
        else:
            from methods.ifd.scoring import IFDScore

            rows = [json.loads(line) for line in (ctx.out_dir / "scores.jsonl").read_text().splitlines()]
            scores = [IFDScore(r["id"], r["conditioned"], r["direct"], r["answer_tokens"]) for r in rows]
            if cfg.arm == "ifd_top":
                ids = select(scores, cfg.rate, cfg.variant, cfg.margin)
            else:  # the lowest IFD: the answers the instruction explains best
                ordered = sorted(scores, key=lambda s: s.ifd if cfg.variant == "ifd" else s.ifd_ppl)
                ids = [s.id for s in ordered[:n]]
        write_json_atomic(ctx.out_dir / "selection.json", ids)
        chosen = [r for r in train if r.id in set(ids)]
        mix = composition(chosen)
        return {
            "n_selected": len(chosen),
            "selected_corrupted_share": mix["corrupted_share"],
            "composition": mix,
        }

    def stage_tune(self, ctx: RunContext) -> dict[str, Any]:
        cfg, lm = self.cfg, self.base_model(ctx)
        ids = set(json.loads((ctx.out_dir / "selection.json").read_text()))
        chosen = [r for r in self.records(ctx, "train") if r.id in ids]
        model = tune(
            lm.model,
            lm.tokenizer,
            chosen,
            cfg.tuning,
            ctx.seed,
            ctx.cfg.hardware.accelerator,
            cfg.train_steps,
        )
        model.save_pretrained(str(ctx.out_dir / "tuned"))
        return {"tuned_on": len(chosen)}

    def stage_evaluate(self, ctx: RunContext) -> dict[str, Any]:
        held_out = self.records(ctx, "eval")
        if not held_out:
            return {}
        model, tokenizer = self.adapter(ctx, "tuned")
        answers = generate_answers(model, tokenizer, held_out, self.cfg.max_new_tokens)
        hits = [exact_match(a, r.reference or r.output) for a, r in zip(answers, held_out, strict=True)]
        rows = [
            {"id": r.id, "family": r.family, "answer": a, "reference": r.reference, "hit": h}
            for r, a, h in zip(held_out, answers, hits, strict=True)
        ]
        (ctx.out_dir / "predictions.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
        return {"exact_match": 100.0 * sum(hits) / len(hits)}

    def stages(self, ctx: RunContext) -> list[Stage]:
        scored = self.cfg.arm in ("ifd_top", "ifd_bottom")
        names = ["data", *(["pre_experience", "score"] if scored else []), "select", "tune", "evaluate"]
        return [Stage(name, getattr(self, f"stage_{name}")) for name in names]

    def final_metrics(self, summaries: dict[str, dict[str, Any]]) -> dict[str, float]:
        metrics = {}
        for summary in summaries.values():
            metrics.update({k: float(v) for k, v in summary.items() if isinstance(v, int | float)})
        return metrics
