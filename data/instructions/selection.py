"""The instruction-data selection pipeline shared by IFD and AlpaGasus: data → (the method's scoring) →
select → tune → evaluate.

A method subclasses ``SelectionPipeline``, adds its scoring stages and says which ids its arms keep;
the data, equal-compute tuning and held-out evaluation are the same code for every method and arm, so
the arms differ only in what they train on. Each stage leaves its artefacts in the run dir (records,
scores, the selected ids, the tuned adapter, predictions) and a re-run skips the stages already done.
"""

from __future__ import annotations

import dataclasses
import json
import random
from typing import Any

from omegaconf import OmegaConf

from data.instructions.alpaca_eval import load_alpaca_eval, model_outputs, win_rate
from data.instructions.generated import composition, exact_match, generate, generate_eval
from data.instructions.parallel_fit import world_size
from data.instructions.records import InstructionRecord, load_records, save_records
from data.instructions.template import question_text
from data.instructions.test_sets import load_test_sets
from data.instructions.tuning import generate_answers, tune
from data.llm.loader import load_causal_lm
from runners.atomic import write_atomic, write_json_atomic
from runners.context import RunContext
from runners.contract import PipelineMethod, Stage
from runners.validate import ConfigError


class NothingSelected(ConfigError):
    """A stage produced no records (an empty data file, a grader with no parsable score, an arm that kept
    nothing): raised by that stage, naming the file or the cause, instead of a cryptic failure in tune.
    A ConfigError: the way out is another setting, so run.py prints it without a traceback."""


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

    def why_nothing_selected(self, ctx: RunContext, train: list[InstructionRecord]) -> str:
        """Why the arm kept no record (for the select stage's error); methods say more."""
        return "the arm's rule kept none of them"

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def on_device(model: Any, ctx: RunContext) -> Any:
        """``model`` on the runner's device (the device contract, runners.context), unless accelerate
        spread it over several devices (``model.device_map=auto`` on more GPUs than one): that placement
        stays."""
        placement = getattr(model, "hf_device_map", None) or {}
        if len({str(d) for d in placement.values()}) > 1:
            return model
        return model.to(ctx.device)

    def base_model(self, ctx: RunContext) -> Any:
        lm = load_causal_lm(OmegaConf.to_object(ctx.cfg.model))
        return dataclasses.replace(lm, model=self.on_device(lm.model, ctx))

    def trainable_model(self, ctx: RunContext) -> Any:
        """The base model to fine-tune. A full fine-tune loads fp32 weights (its fp32 masters: a hub
        checkpoint in fp16 rounded to a bf16 ``model.dtype`` would lose bits before training starts) on
        the configured device; the compute dtype is ``hardware.precision`` (bf16-mixed at paper scale).
        LoRA keeps the frozen base in ``model.dtype``: only its adapter trains (in fp32). Under several
        ranks ``model.device_map`` is ignored: Lightning places each rank's copy (or shards it)."""
        model_cfg = OmegaConf.to_object(ctx.cfg.model)
        if self.cfg.tuning.mode == "full":
            model_cfg = dataclasses.replace(model_cfg, dtype="float32")
        if world_size(ctx.cfg.get("hardware")) > 1:  # each rank holds (ddp) or shards (fsdp) a whole copy:
            model_cfg = dataclasses.replace(model_cfg, device_map=None)  # no accelerate spread over GPUs
        lm = load_causal_lm(model_cfg)
        return dataclasses.replace(lm, model=self.on_device(lm.model, ctx))

    def save_tuned(self, ctx: RunContext, model: Any, tokenizer: Any, name: str) -> None:
        """Save a tuned model (or its LoRA adapter) as stage ``name``'s artefact. Full weights are saved in
        ``model.dtype`` (the dtype every later stage loads them in) with the tokenizer, so the folder is a
        complete model that ``adapter`` reloads alone."""
        path = ctx.out_dir / name
        if self.cfg.tuning.mode == "full":
            dtype = ctx.cfg.model.dtype
            if dtype not in ("auto", "float32"):
                import torch

                model = model.to(getattr(torch, dtype))
            tokenizer.save_pretrained(str(path))
        model.save_pretrained(str(path))

    def records(self, ctx: RunContext, name: str) -> list[InstructionRecord]:
        return load_records(str(ctx.out_dir / f"{name}.jsonl"))

    def adapter(self, ctx: RunContext, name: str) -> tuple[Any, Any]:
        """The model tuned by stage ``name``: the base model with its LoRA adapter, or the fully tuned
        weights loaded once, directly, in the configured ``model.dtype`` and ``model.device_map`` (no
        base model first, no fp32 copy on the CPU)."""
        path = ctx.out_dir / name
        if self.cfg.tuning.mode == "lora":
            from peft import PeftModel

            lm = self.base_model(ctx)  # on ctx.device: the adapter's weights load beside it
            return PeftModel.from_pretrained(lm.model, str(path)).eval(), lm.tokenizer
        model_cfg = OmegaConf.to_object(ctx.cfg.model)
        if not (path / "tokenizer_config.json").exists():  # saved before save_tuned kept the tokenizer
            from transformers import AutoTokenizer

            from data.llm.loader import resolve

            AutoTokenizer.from_pretrained(resolve(model_cfg), revision=model_cfg.revision).save_pretrained(
                str(path)
            )
        local = dataclasses.replace(
            model_cfg, name=str(path), source="hub", package=None, gguf_file=None, revision=None
        )
        lm = load_causal_lm(local)
        return self.on_device(lm.model, ctx).eval(), lm.tokenizer

    @staticmethod
    def random_ids(train: list[InstructionRecord], n: int, seed: int) -> list[str]:
        return random.Random(seed).sample([r.id for r in train], min(n, len(train)))

    # ------------------------------------------------------------------ shared stages

    def stage_data(self, ctx: RunContext) -> dict[str, Any]:
        cfg = self.cfg
        if cfg.data == "generated":
            train = generate(cfg.n_train, seed=ctx.seed, corrupt_share=cfg.corrupt_share)
            held_out = generate_eval(cfg.eval_per_family, seed=ctx.seed)
        else:  # real data has no held-out checkable answers: the judge evaluates the test sets' answers
            train, held_out = load_records(cfg.data, limit=cfg.n_train), []
        # the open-ended test sets (the papers' Vicuna, Koala, WizardLM, Self-Instruct), no references
        held_out += load_test_sets(dict(cfg.test_sets), cfg.test_limit)
        if not train:
            raise NothingSelected(
                f"method.data={cfg.data!r} has no records: the data stage produced 0 training records, "
                "so there is nothing to select or tune on. Point method.data at a .json/.jsonl file "
                "with at least one record, or use method.data=generated."
            )
        self.check_benchmarks()
        save_records(ctx.out_dir / "train.jsonl", train)
        save_records(ctx.out_dir / "eval.jsonl", held_out)
        summary = {
            "n_train": len(train),
            "n_eval": len(held_out),
            "train_corrupted_share": composition(train)["corrupted_share"],
        }
        for name in cfg.test_sets:
            summary[f"n_test_{name}"] = sum(r.family == name for r in held_out)
        return summary

    def check_benchmarks(self) -> None:
        """The paper-scale benchmarks' sources and task names, checked in the data stage rather than after
        the tuning (a ConfigError: run.py prints the message, which names the key, without a traceback)."""
        cfg = self.cfg
        if cfg.alpaca_eval.source:
            try:
                load_alpaca_eval(cfg.alpaca_eval.source, cfg.alpaca_eval.limit)
            except (ValueError, OSError) as ex:
                raise ConfigError(f"method.alpaca_eval.source={cfg.alpaca_eval.source}: {ex}") from None
        if cfg.leaderboard.tasks:
            from data.extras import require
            from data.instructions.leaderboard import check_tasks

            try:
                require("lm_eval", "online", "method.leaderboard.tasks")
                check_tasks(cfg.leaderboard)
            except (ValueError, OSError) as ex:
                raise ConfigError(str(ex)) from None

    def stage_select(self, ctx: RunContext) -> dict[str, Any]:
        train = self.records(ctx, "train")
        ids = [r.id for r in train] if self.cfg.arm == "full" else self.selected_ids(ctx, train)
        write_json_atomic(ctx.out_dir / "selection.json", ids)
        chosen = [r for r in train if r.id in set(ids)]
        if not chosen:
            raise NothingSelected(
                f"the select stage kept 0 of {len(train)} records for method.arm={self.cfg.arm}: "
                f"{self.why_nothing_selected(ctx, train)}"
            )
        mix = composition(chosen)
        return {
            "n_selected": len(chosen),
            "selected_corrupted_share": mix["corrupted_share"],
            "composition": mix,
        }

    def stage_tune(self, ctx: RunContext) -> dict[str, Any]:
        cfg, lm = self.cfg, self.trainable_model(ctx)
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
            precision=str(ctx.cfg.hardware.precision),
            template=cfg.template,
            hardware=ctx.cfg.hardware,
        )
        self.save_tuned(ctx, model, lm.tokenizer, "tuned")
        return {"tuned_on": len(chosen)}

    def stage_evaluate(self, ctx: RunContext) -> dict[str, Any]:
        """Greedy answers on the held-out set and their exact match; ``predictions.jsonl`` keeps the
        question and answer of each item for the pairwise judge (data.instructions.judge_runs)."""
        held_out = self.records(ctx, "eval")
        if not held_out:
            return {}
        model, tokenizer = self.adapter(ctx, "tuned")
        answers = generate_answers(
            model, tokenizer, held_out, self.cfg.max_new_tokens, template=self.cfg.template
        )
        # exact match where a reference exists (the generated tasks); test-set items have none (None)
        hits = [
            exact_match(a, r.reference or r.output) if (r.reference or r.output) else None
            for a, r in zip(answers, held_out, strict=True)
        ]
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
        checked = [h for h in hits if h is not None]
        summary: dict[str, Any] = {"n_answered": len(rows)}
        if checked:
            summary["exact_match"] = sum(checked) / len(checked)  # a fraction, as every share
        return summary

    def stage_leaderboard(self, ctx: RunContext) -> dict[str, Any]:
        """The Open LLM Leaderboard tasks (data.instructions.leaderboard) on the tuned model, through
        lm-eval's harness: ``leaderboard_<task>`` and ``leaderboard_average``, fractions."""
        from data.instructions.leaderboard import evaluate_leaderboard

        model, tokenizer = self.adapter(ctx, "tuned")
        return evaluate_leaderboard(model, tokenizer, self.cfg.leaderboard)

    def stage_alpaca_eval(self, ctx: RunContext) -> dict[str, Any]:
        """The tuned model's greedy answers to AlpacaEval's instructions (data.instructions.alpaca_eval),
        saved in AlpacaEval's model_outputs format beside the set's reference items."""
        cfg = self.cfg
        items = load_alpaca_eval(cfg.alpaca_eval.source, cfg.alpaca_eval.limit)
        records = [InstructionRecord(f"alpaca_eval/{i}", item["instruction"]) for i, item in enumerate(items)]
        model, tokenizer = self.adapter(ctx, "tuned")
        answers = generate_answers(model, tokenizer, records, cfg.max_new_tokens, template=cfg.template)
        write_json_atomic(ctx.out_dir / "alpaca_eval_reference.json", items)
        outputs = model_outputs(items, answers, f"{cfg.name}_{cfg.arm}")
        write_json_atomic(ctx.out_dir / "alpaca_eval_outputs.json", outputs)
        return {"alpaca_eval_answered": len(outputs)}

    def stage_alpaca_eval_judge(self, ctx: RunContext) -> dict[str, Any]:
        """Each AlpacaEval answer against the set's reference answer, by ``method.judge`` in both orders
        (replies cached on disk: a re-run asks nothing twice); the win rate counts ties half."""
        from data.cache import cache_dir
        from data.llm.client import make_client
        from data.llm.judge import judge_pairs, save_verdicts

        cfg = self.cfg
        items = json.loads((ctx.out_dir / "alpaca_eval_reference.json").read_text())
        outputs = json.loads((ctx.out_dir / "alpaca_eval_outputs.json").read_text())
        client = make_client(cfg.judge, cache_dir() / "llm_responses.sqlite")
        verdicts = judge_pairs(
            client,
            [item["instruction"] for item in items],
            [row["output"] for row in outputs],
            [item["output"] for item in items],
            max_tokens=cfg.judge.max_tokens,
        )
        save_verdicts(ctx.out_dir / "alpaca_eval_verdicts.jsonl", verdicts)
        return win_rate(verdicts)

    def evaluation_stages(self) -> list[str]:
        """The paper-scale benchmarks after the held-out evaluation, when configured: the leaderboard
        tasks (``method.leaderboard.tasks``), AlpacaEval (``method.alpaca_eval.source``)."""
        names = ["leaderboard"] if self.cfg.leaderboard.tasks else []
        return names + (["alpaca_eval", "alpaca_eval_judge"] if self.cfg.alpaca_eval.source else [])

    def stage_reads(self) -> dict[str, tuple[str, ...]]:
        """The config keys each stage's result depends on (runners.contract.Stage.reads): a stage is
        reused on resume only if these are unchanged. Subclasses add their scoring stages and extend
        ``select`` with the keys their ``selected_ids`` reads."""
        return {
            "data": (
                "seed",
                "method.data",
                "method.n_train",
                "method.corrupt_share",
                "method.eval_per_family",
                "method.test_sets",
                "method.test_limit",
            ),
            "select": ("seed", "method.arm"),
            "tune": ("seed", "model", "hardware", "method.tuning", "method.train_steps", "method.template"),
            "evaluate": (
                "model",
                "hardware",
                "method.tuning.mode",
                "method.max_new_tokens",
                "method.template",
            ),
            "leaderboard": ("model", "hardware", "method.tuning.mode", "method.leaderboard"),
            "alpaca_eval": (
                "model",
                "hardware",
                "method.tuning.mode",
                "method.max_new_tokens",
                "method.template",
                "method.alpaca_eval",
            ),
            "alpaca_eval_judge": ("method.judge",),
        }

    def stages(self, ctx: RunContext) -> list[Stage]:
        names = ["data", *self.scoring_stages(), "select", "tune", "evaluate", *self.evaluation_stages()]
        reads = self.stage_reads()
        # A stage without declared reads gets None: its identity is the whole config (the safe default).
        return [Stage(name, getattr(self, f"stage_{name}"), reads.get(name)) for name in names]

    def final_metrics(self, summaries: dict[str, dict[str, Any]]) -> dict[str, float]:
        metrics = {}
        for summary in summaries.values():
            metrics.update({k: float(v) for k, v in summary.items() if isinstance(v, int | float)})
        return metrics
