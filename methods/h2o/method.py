"""H2O as a runner plugin: load a causal LM, evaluate it under a KV-cache eviction policy."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from lightning.fabric import Fabric
from omegaconf import OmegaConf

from data.config import CausalLMConfig
from data.llm.attention import register_observed_attention
from data.llm.eviction import make_policy
from data.llm.kv_cache import EvictingCache
from data.llm.loader import load_causal_lm, load_config
from data.llm.text import load_text
from methods.h2o.config import H2OConfig
from methods.h2o.evaluate import full_cache, generate, streaming_nll
from methods.h2o.query_mask import Eviction, OfficialMask, register_query_mask_attention
from runners.context import RunContext
from runners.contract import LoopMethod

log = logging.getLogger("reprolab")


def check_attention_scores_available(model_cfg: CausalLMConfig) -> None:
    """Fail before loading weights if the architecture cannot route attention through our function."""
    from transformers import AutoModelForCausalLM

    config = load_config(model_cfg)
    model_class = AutoModelForCausalLM._model_mapping.get(type(config), None)
    if model_class is None or not getattr(model_class, "_supports_attention_backend", False):
        name = getattr(model_class, "__name__", type(config).__name__)
        raise ValueError(
            f"model.name={model_cfg.name!r} ({name}) does not expose attention scores through transformers' "
            "attention interface, which H2O needs; use a Llama-family, OPT or GPT-NeoX model"
        )


def attention_for(cfg: H2OConfig) -> str:
    """The attention path, the same for every policy so that speed columns compare policies, not kernels
    (the full cache on SDPA against the others on eager attention would not): eager attention that shows
    its weights to the cache, or, for lm_eval, that masks each query to what the budget keeps."""
    if cfg.evaluation == "lm_eval":
        return register_query_mask_attention()
    return register_observed_attention()


def check_tasks_available(tasks: list[str]) -> None:
    """lm-eval task names load their datasets from the hub: refuse at once, before any weights load, when
    it cannot be reached (local task YAML files need nothing)."""
    from data.extras import require
    from data.hub import hub_unreachable
    from methods.h2o.lm_eval_tasks import is_task_name

    require("lm_eval", "online", "method.evaluation=lm_eval")
    named = [t for t in tasks if is_task_name(t)]
    why = hub_unreachable("dataset") if named else None
    if why is not None:
        raise ValueError(
            f"method.tasks={named} are lm-eval tasks whose datasets come from the Hugging Face hub, which is "
            f"unreachable ({why}); give local task YAML files instead (method.tasks=[path/to/task.yaml])"
        )


def read_text(spec: str) -> str:
    """``method.text``: "pydoc", a local UTF-8 text file (a path: it exists, holds a "/", or ends in
    ".txt"), else a hub dataset spec. A file that is missing, unreadable, not UTF-8 or empty is an
    error naming it, raised before any weights load."""
    path = Path(spec).expanduser()
    if spec == "pydoc" or not (path.exists() or "/" in spec or spec.endswith(".txt")):
        return load_text(spec)
    where = f"method.text={spec!r} ({path.resolve()})"
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as ex:
        raise ValueError(f"{where} is not UTF-8 text: {ex}") from ex
    except OSError as ex:
        raise ValueError(f"{where} cannot be read: {ex.strerror or ex}") from ex
    if not text.strip():
        raise ValueError(f"{where} is empty")
    return text


class H2O(LoopMethod):
    def __init__(self, **cfg: Any) -> None:
        self.cfg = H2OConfig(**cfg)

    def eviction(self, reference_length: int) -> Eviction | None:
        """The policy and entries kept for a sequence of ``reference_length`` tokens (None: full cache)."""
        cfg = self.cfg
        if cfg.policy == "full":
            return None
        total, recent = cfg.budgets(reference_length)
        return Eviction(make_policy(cfg.policy, recent, cfg.sinks, cfg.seed), total)

    def query_mask(self, request_length: int) -> Eviction | OfficialMask | None:
        """What each query of an lm-eval request may see: the paper's replayed cache, or with
        ``method.mask=official`` the official code's counts, int(ratio × length) as its attention does."""
        cfg = self.cfg
        if cfg.mask == "paper" or cfg.policy == "full":
            return self.eviction(request_length)
        heavy = cfg.budget * cfg.heavy_fraction if cfg.policy == "h2o" else 0.0
        return OfficialMask(int(heavy * request_length), int((cfg.budget - heavy) * request_length))

    def make_cache(self, num_layers: int, reference_length: int) -> Any:
        eviction = self.eviction(reference_length)
        if eviction is None:
            return full_cache()
        return EvictingCache(num_layers, eviction.policy, budget=eviction.budget)

    def run(self, ctx: RunContext, fabric: Fabric) -> dict[str, float]:
        cfg = self.cfg
        model_cfg = OmegaConf.to_object(ctx.cfg.model)
        if not isinstance(model_cfg, CausalLMConfig):
            raise ValueError(
                "method=h2o needs a causal LM: model=smollm2_135m or model=hf model.name=<hub name>"
            )
        check_attention_scores_available(model_cfg)
        text = read_text(cfg.text) if cfg.evaluation == "perplexity" else ""  # fails before the weights
        if cfg.evaluation == "lm_eval":
            check_tasks_available(cfg.tasks)
        lm = load_causal_lm(model_cfg, attn_implementation=attention_for(cfg), device=fabric.device)
        model = lm.model
        if cfg.evaluation == "perplexity":
            return self.perplexity(ctx, model, lm.tokenizer, text)
        if cfg.evaluation == "generate":
            return self.generation(ctx, model, lm.tokenizer)
        from methods.h2o.lm_eval_tasks import evaluate_tasks

        return evaluate_tasks(self, ctx, model, lm.tokenizer)

    def perplexity(self, ctx: RunContext, model: Any, tokenizer: Any, text: str) -> dict[str, float]:
        cfg = self.cfg
        ids = tokenizer(text, return_tensors="pt").input_ids[0]
        need = cfg.batch_size * cfg.max_tokens
        if ids.numel() < need:
            raise ValueError(
                f"text={cfg.text!r} has {ids.numel()} tokens; batch_size × max_tokens needs {need}"
            )
        streams = ids[:need].view(cfg.batch_size, cfg.max_tokens).to(model.device)
        cache = self.make_cache(model.config.num_hidden_layers, cfg.max_tokens)
        label = f"{cfg.policy} {cfg.budget:g}"
        with ctx.progress(cfg.max_tokens - 1, f"perplexity {label}") as bar:
            result = streaming_nll(model, streams, cache, on_step=lambda _: bar.update())
        c = model.config
        head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
        kv_heads = getattr(c, "num_key_value_heads", None) or c.num_attention_heads
        element = next(model.parameters()).element_size()
        full_bytes = (
            2 * c.num_hidden_layers * cfg.batch_size * kv_heads * (cfg.max_tokens - 1) * head_dim * element
        )
        metrics = {
            "perplexity": math.exp(result.nll),
            "nll": result.nll,
            "tokens_per_second": result.tokens_per_second,
            "kv_bytes": float(result.kv_bytes),
            "kv_fraction": result.kv_bytes / full_bytes,
            "kv_entries": float(result.kv_entries),
        }
        ctx.log(metrics, step=result.tokens)
        log.info(
            "%s: perplexity %.3f, KV cache %.1f%% of full",
            label,
            metrics["perplexity"],
            100 * metrics["kv_fraction"],
        )
        return metrics

    def generation(self, ctx: RunContext, model: Any, tokenizer: Any) -> dict[str, float]:
        cfg = self.cfg
        if cfg.chat_template and tokenizer.chat_template:
            messages = [{"role": "user", "content": cfg.prompt}]
            text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        else:
            text = cfg.prompt
        prompt_ids = tokenizer(text, return_tensors="pt", add_special_tokens=False).input_ids.to(model.device)
        prompt_ids = prompt_ids.expand(cfg.batch_size, -1)
        cache = self.make_cache(model.config.num_hidden_layers, prompt_ids.shape[1])
        out = generate(model, tokenizer, prompt_ids, cache, cfg.max_new_tokens)
        (ctx.out_dir / "generation.txt").write_text(out["text"][0])
        log.info("generation (%s, budget %g):\n%s", cfg.policy, cfg.budget, out["text"][0])
        metrics = {k: float(out[k]) for k in ("new_tokens", "tokens_per_second", "kv_bytes")}
        metrics["prompt_tokens"] = float(prompt_ids.shape[1])
        ctx.log(metrics, step=0)
        return metrics
