"""lm-eval-harness tasks (the paper's COPA, MathQA, OpenBookQA, PiQA, RTE, Winogrande) under a KV budget.

The protocol of the paper's accuracy-vs-budget results (official scripts: FMInference/H2O
h2o_hf/scripts/lm_eval/*.sh, 5-shot; h2o_hf/run_lm_eval_harness.py scores the whole prompt in one
forward pass): every query position of a request, context and continuation alike, attends only to what a
budgeted cache holds, the budget being a ratio of the whole request's length. Each request runs in one
pass with the per-query eviction mask of ``methods.h2o.query_mask`` (equal to streaming the request token
by token through the evicting cache). The full policy runs the same eager attention without a mask.

lm-eval's own ``TemplateLM`` tokenizes: context and continuation are encoded together and split where the
context's encoding ends (trailing spaces move to the continuation), as its HF backend does.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import torch

from methods.h2o.query_mask import Eviction, OfficialMask, evicting

DEFAULT_MAX_LENGTH = 2048  # lm-eval's HF backend, when the model config names no context length


def is_task_name(spec: str) -> bool:
    """An lm-eval task name (its data comes from the hub), not a local task YAML file."""
    return not spec.endswith((".yaml", ".yml")) and not Path(spec).expanduser().exists()


def load_tasks(specs: list[str]) -> tuple[list[str], Any]:
    """``method.tasks``: lm-eval task names (their datasets come from the hub) or local task YAML files (a
    task config as lm-eval's own task folders hold, e.g. over local JSON files). Returns the task names and
    lm-eval's TaskManager, which also indexes each YAML's folder (a local task overrides a built-in one of
    the same name)."""
    import yaml
    from lm_eval.tasks import TaskManager

    class _Loader(yaml.SafeLoader):  # reads the `task:` name; lm-eval itself resolves `!function` tags
        pass

    _Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    names, folders = [], []
    for spec in specs:
        path = Path(spec).expanduser()
        if is_task_name(spec):
            names.append(spec)
            continue
        if not path.is_file():
            raise ValueError(f"method.tasks: {spec!r} is not a task YAML file ({path.resolve()})")
        config = yaml.load(path.read_text(), Loader=_Loader)
        if not isinstance(config, dict) or not isinstance(config.get("task"), str):
            raise ValueError(f"method.tasks: {spec!r} has no `task:` name, so it is not an lm-eval task YAML")
        names.append(config["task"])
        folders.append(str(path.resolve().parent))
    # lm-eval's built-in index (~1k task folders, tens of seconds) only when a task is named from it.
    builtin = len(folders) < len(names)
    manager = TaskManager(include_path=list(dict.fromkeys(folders)) or None, include_defaults=builtin)
    return names, manager


def max_length(model: Any) -> int:
    """The context length lm-eval's HF backend truncates requests to (from the model config)."""
    for attr in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(model.config, attr, None)
        if isinstance(value, int):
            return value
    return DEFAULT_MAX_LENGTH


def scored_length(context: list[int], continuation: list[int], limit: int) -> int:
    """The request length the budget ratio applies to: the whole request, as the official simulation
    counts it (h2o_hf/utils_lm_eval/modify_opt.py sizes its budgets from the tokens it attends over), but
    only the part inside lm-eval's window when the request is cut on the left (``score_request``)."""
    return min(len(context) + len(continuation), limit + 1)


@torch.no_grad()
def score_request(
    model: Any,
    context: list[int],
    continuation: list[int],
    eviction: Eviction | OfficialMask | None,
    limit: int,
) -> tuple[float, bool]:
    """Σ log p(continuation tokens) and whether greedy decoding gives exactly the continuation, from one
    pass over (context + continuation)[:-1], truncated on the left to ``limit`` tokens as lm-eval does."""
    inputs = (context + continuation)[-(limit + 1) :][:-1]
    ids = torch.tensor([inputs], device=model.device)
    scope = evicting(eviction) if eviction is not None else contextlib.nullcontext()
    with scope:
        logits = model(ids, use_cache=False).logits[0, -len(continuation) :]
    logp = torch.log_softmax(logits.float(), dim=-1)
    target = torch.tensor(continuation, device=logp.device)
    return logp.gather(-1, target[:, None]).sum().item(), bool((logp.argmax(-1) == target).all())


def make_lm(method: Any, ctx: Any, model: Any, tokenizer: Any) -> Any:
    """An lm-eval model scoring each request under ``method``'s policy and budget."""
    from lm_eval.api.model import TemplateLM

    limit = max_length(model)

    class BudgetLM(TemplateLM):
        backend = "causal"

        @property
        def eot_token_id(self) -> int:
            return tokenizer.eos_token_id

        def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs: Any) -> list[int]:
            """The tokenizer's own special tokens unless told (lm-eval's HF backend with add_bos_token
            unset), none when the string already starts with BOS."""
            if add_special_tokens is None and tokenizer.bos_token and string.startswith(tokenizer.bos_token):
                add_special_tokens = False
            kw = {} if add_special_tokens is None else {"add_special_tokens": add_special_tokens}
            return tokenizer.encode(string, **kw)

        def _loglikelihood_tokens(self, requests: list, disable_tqdm: bool = False) -> list[Any]:
            out = []
            label = f"lm-eval {method.cfg.policy} {method.cfg.budget:g}"
            with ctx.progress(len(requests), label) as bar:
                for _, context, continuation in requests:
                    eviction = method.query_mask(scored_length(context, continuation, limit))
                    out.append(score_request(model, context, continuation, eviction, limit))
                    bar.update()
            return out

        def loglikelihood_rolling(self, requests: list, disable_tqdm: bool = False) -> list[float]:
            raise NotImplementedError("rolling loglikelihood: use method.evaluation=perplexity")

        def generate_until(self, requests: list, disable_tqdm: bool = False) -> list[str]:
            raise NotImplementedError("generation tasks: use method.evaluation=generate")

    return BudgetLM()


def evaluate_tasks(method: Any, ctx: Any, model: Any, tokenizer: Any) -> dict[str, float]:
    """Run ``method.cfg.tasks`` through lm-eval's harness, ``num_fewshot`` shots; accuracy per task."""
    import lm_eval

    cfg = method.cfg
    tasks, manager = load_tasks(list(cfg.tasks))
    out = lm_eval.simple_evaluate(
        model=make_lm(method, ctx, model, tokenizer),
        tasks=tasks,
        task_manager=manager,
        num_fewshot=cfg.num_fewshot,
        limit=cfg.limit,
        random_seed=cfg.seed,
    )
    per_doc = {  # each document's Σ log p per choice: what the budget changed, request by request
        task: [[float(r[0]) for r in sample["filtered_resps"]] for sample in samples]
        for task, samples in (out.get("samples") or {}).items()
    }
    saved = {"results": out["results"], "n-shot": out.get("n-shot"), "loglikelihoods": per_doc}
    (ctx.out_dir / "lm_eval_results.json").write_text(json.dumps(saved, indent=1, default=str))
    metrics = {}
    for task, values in out["results"].items():
        for key, value in values.items():
            name = key.split(",")[0]  # "acc,none" -> acc; standard errors stay in lm_eval_results.json
            if name in ("acc", "acc_norm") and isinstance(value, int | float):
                metrics[f"{task}/{name}"] = float(value)
    ctx.log(metrics, step=0)
    return metrics
