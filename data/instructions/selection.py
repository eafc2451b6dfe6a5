"""The instruction-data selection pipeline shared by IFD and AlpaGasus: data → (the method's scoring) →
select → tune → evaluate.

A method subclasses ``SelectionPipeline``, adds its scoring stages and says which ids its arms keep;
the data, equal-compute tuning and held-out evaluation are the same code for every method and arm, so
the arms differ only in what they train on. Each stage leaves its artefacts in the run dir (records,
scores, the selected ids, the tuned adapter, predictions) and a re-run skips the stages already done.
"""

from __future__ import annotations

import json
import random
from typing import Any

from omegaconf import OmegaConf

from data.instructions.generated import composition, exact_match, generate, generate_eval
from data.instructions.records import InstructionRecord, load_records, save_records
from data.instructions.template import question_text
from data.instructions.tuning import generate_answers, tune
from data.llm.loader import load_causal_lm
from runners.atomic import write_atomic, write_json_atomic
from runners.context import RunContext
from runners.contract import PipelineMethod, Stage


def write_jsonl(path: Any, rows: list[dict[str, Any]]) -> None:
    write_atomic(path, lambda f: f.writelines(json.dumps(r) + "\n" for r in rows))


def read_jsonl(path: Any) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


class SelectionPipeline(PipelineMethod):
    """Subclasses set ``self.cfg`` (an ``InstructionSelectionConfig``) and implement ``scoring_stages``
    and ``selected_ids``; the ``full`` arm (every record) is handled here."""

    cfg: Any

    # ------------------------------------------------------------------ to implement

    def scoring_stages(self) -> list[str]:
        """Names of the method's stages between ``data`` and ``select`` (``stage_<name>`` methods)."""
        return []

    def selected_ids(self, ctx: RunContext, train: list[InstructionRecord]) -> list[str]:
        """The ids the configured arm trains on (not called for ``arm=full``)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ helpers

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

    @staticmethod
    def random_ids(train: list[InstructionRecord], n: int, seed: int) -> list[str]:
        return random.Random(seed).sample([r.id for r in train], min(n, len(train)))

    # ------------------------------------------------------------------ shared stages

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

    def stage_select(self, ctx: RunContext) -> dict[str, Any]:
        train = self.records(ctx, "train")
        ids = [r.id for r in train] if self.cfg.arm == "full" else self.selected_ids(ctx, train)
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
        """Greedy answers on the held-out set and their exact match; ``predictions.jsonl`` keeps the
        question and answer of each item for the pairwise judge (data.instructions.judge_runs)."""
        held_out = self.records(ctx, "eval")
        if not held_out:
            return {}
        model, tokenizer = self.adapter(ctx, "tuned")
        answers = generate_answers(model, tokenizer, held_out, self.cfg.max_new_tokens)
        hits = [exact_match(a, r.reference or r.output) for a, r in zip(answers, held_out, strict=True)]
        rows = [
            {
                "id": r.id,
                "family": r.family,
                "question": question_text(r),
                "answer": a,
                "reference": r.reference,
                "hit": h,
            }
            for r, a, h in zip(held_out, answers, hits, strict=True)
        ]
        write_jsonl(ctx.out_dir / "predictions.jsonl", rows)
        return {"exact_match": 100.0 * sum(hits) / len(hits)}

    def stages(self, ctx: RunContext) -> list[Stage]:
        names = ["data", *self.scoring_stages(), "select", "tune", "evaluate"]
        return [Stage(name, getattr(self, f"stage_{name}")) for name in names]

    def final_metrics(self, summaries: dict[str, dict[str, Any]]) -> dict[str, float]:
        metrics = {}
        for summary in summaries.values():
            metrics.update({k: float(v) for k, v in summary.items() if isinstance(v, int | float)})
        return metrics
