"""Where one decode step goes: full sdpa (transformers' DynamicCache) against ours H2O 20%.

    python bench/h2o_step_breakdown.py [--context 2048] [--steps 32] [--batch 1] [--threads 1]
    python bench/h2o_step_breakdown.py --quick [--model DIR]   # smoke test: tiny sizes

Both variants prefill the same context, then decode ``--steps`` greedy steps taking turns step by step
(so load from elsewhere hits both alike). Wall time of each step is split by timers around: the MLPs,
the attention modules (projections, RoPE, cache update and the attention function), inside them the
cache update (DynamicCache concatenates the whole cache each step; ours writes one slot) and the
attention function (sdpa; ours: softmax attention with column sums, then score accumulation and
eviction), and the norms; "rest" is the step minus the layers (embedding, mask, lm_head, Python). A
roofline line gives the bytes a step must read: the weights (once per step, whatever the batch) and the
KV entries (per row). Timers add a little overhead to every variant; the split, not the total, is the
point (``bench/h2o_speed.py`` times the steps bare).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported, so intra-op pools start small

import argparse
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/...` from anywhere

import torch
import transformers
from transformers.cache_utils import DynamicLayer
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from bench.h2o_speed import FULL, OURS_H2O, Variant, load_models, ours_h2o, prefill, step
from data.config import CausalLMConfig
from data.llm.attention import OBSERVED_ATTENTION
from data.llm.kv_cache import EvictingLayer
from data.llm.loader import offline_model
from data.llm.text import pydoc_text

PARTS = {  # timer name -> what it covers
    "mlp": "MLP modules (3 GEMVs)",
    "attention module": "attention modules: q/k/v/o projections, RoPE, cache update, attention fn",
    "  cache update": "DynamicLayer.update (cat) / EvictingLayer.update (one slot)",
    "  attention fn": "sdpa / ours: softmax attention + column sums + observe",
    "    observe": "ours: score accumulation + eviction",
    "      evict one": "ours: argmin + moving the newest entry into the freed slot",
    "norms": "RMSNorm / LayerNorm modules",
}


class Timers:
    """Seconds per timer name, collected while ``active`` names the variant being timed."""

    def __init__(self) -> None:
        self.seconds: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self.active: str | None = None

    def wrap(self, name: str, fn: Callable) -> Callable:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                if self.active is not None:
                    self.seconds[self.active][name] += time.perf_counter() - start

        return timed


@contextmanager
def patched(timers: Timers, models: list[torch.nn.Module]) -> Iterator[None]:
    """Timers around the parts of ``PARTS`` (class methods, attention functions, module hooks); all
    restored on exit."""
    saved: list[tuple[Any, str, Any]] = []

    def patch(owner: Any, attribute: str, name: str) -> None:
        saved.append((owner, attribute, getattr(owner, attribute)))
        setattr(owner, attribute, timers.wrap(name, getattr(owner, attribute)))

    patch(DynamicLayer, "update", "  cache update")
    patch(EvictingLayer, "update", "  cache update")
    patch(EvictingLayer, "observe", "    observe")
    patch(EvictingLayer, "_evict_one", "      evict one")
    # Models look their attention function up here; the instance's local mapping (where kvpress puts its
    # wrappers) comes before the global one, so the timed function goes there.
    local = ALL_ATTENTION_FUNCTIONS._local_mapping
    functions = {key: local.get(key) for key in ("sdpa", OBSERVED_ATTENTION)}
    for key in functions:
        local[key] = timers.wrap("  attention fn", ALL_ATTENTION_FUNCTIONS[key])
    handles = []
    for model in models:
        for module in model.modules():
            kind = type(module).__name__
            name = (
                "mlp" if kind.endswith("MLP") else "attention module" if kind.endswith("Attention") else None
            )
            name = "norms" if "Norm" in kind else name
            if name is not None:
                handles.append(module.register_forward_pre_hook(lambda m, a, n=name: _start(m, n)))
                handles.append(module.register_forward_hook(lambda m, a, o, n=name: _stop(timers, m, n)))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
        for key, fn in functions.items():
            if fn is None:
                del local[key]
            else:
                local[key] = fn
        for owner, attribute, value in reversed(saved):
            setattr(owner, attribute, value)


def _start(module: torch.nn.Module, name: str) -> None:
    module._breakdown_start = time.perf_counter()


def _stop(timers: Timers, module: torch.nn.Module, name: str) -> None:
    if timers.active is not None:
        timers.seconds[timers.active][name] += time.perf_counter() - module._breakdown_start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--context", type=int, default=2048, help="context tokens")
    parser.add_argument("--steps", type=int, default=32, help="decode steps timed per variant")
    parser.add_argument("--batch", type=int, default=1, help="rows: consecutive chunks of the text")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    parser.add_argument("--model", type=Path, default=None, help="a local model folder (default SmolLM2)")
    parser.add_argument("--quick", action="store_true", help="smoke test: context 64, 4 steps")
    args = parser.parse_args()
    if args.quick:
        args.context, args.steps = 64, 4
    if args.context < 16 or args.steps < 1 or args.batch < 1:
        parser.error("need --context >= 16, --steps >= 1, --batch >= 1")
    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    models, tokenizer = load_models(
        offline_model() if args.model is None else CausalLMConfig(name=str(args.model))
    )
    ids = tokenizer(pydoc_text(), return_tensors="pt").input_ids[0][: args.batch * args.context]
    context_ids = ids.view(args.batch, args.context)
    variants = [Variant(FULL, models["sdpa"], transformers.DynamicCache), ours_h2o(models, args.context)]
    for v in variants:  # warm-up: first-call costs
        prefill(v, context_ids[:, :16])
        step(v, v.cache, v.last_logits.argmax(-1, keepdim=True), 16)
    for v in variants:
        prefill(v, context_ids)
    timers, totals = Timers(), {v.name: [] for v in variants}
    tokens = {v.name: v.last_logits.argmax(-1, keepdim=True) for v in variants}
    with patched(timers, [models["sdpa"], models["observed"]]):
        for i in range(args.steps):
            for v in variants:
                timers.active = v.name
                start = time.perf_counter()
                tokens[v.name] = step(v, v.cache, tokens[v.name], args.context + i).argmax(-1, keepdim=True)
                totals[v.name].append(time.perf_counter() - start)
                timers.active = None
    report(args, models["sdpa"], variants, timers, totals)


def report(
    args: argparse.Namespace,
    model: torch.nn.Module,
    variants: list[Variant],
    timers: Timers,
    totals: dict[str, list[float]],
) -> None:
    config = model.config
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", config.num_attention_heads)
    per_entry = 2 * config.num_hidden_layers * kv_heads * head_dim * 4  # keys + values, fp32
    kept = variants[1].cache.layers[0].keys.shape[2]
    print(
        f"\none decode step, batch {args.batch}, context {args.context}, {args.steps} steps, torch threads "
        f"{torch.get_num_threads()} (ms per step; timers add overhead to both)"
    )
    print(f"{'part':<20} {FULL:>10} {OURS_H2O:>13}  covers")
    steps = args.steps
    mean = {name: 1000 * sum(t) / steps for name, t in totals.items()}
    for part, covers in PARTS.items():
        cells = [timers.seconds[v.name].get(part) for v in variants]
        text = ["-" if c is None else f"{1000 * c / steps:.2f}" for c in cells]
        print(f"{part:<20} {text[0]:>10} {text[1]:>13}  {covers}")
    layers = {
        v.name: sum(timers.seconds[v.name].get(p, 0.0) for p in ("mlp", "attention module", "norms"))
        for v in variants
    }
    rest = [f"{mean[v.name] - 1000 * layers[v.name] / steps:.2f}" for v in variants]
    print(f"{'rest':<20} {rest[0]:>10} {rest[1]:>13}  embedding, mask, lm_head, residuals, Python")
    print(f"{'step (mean)':<20} {mean[FULL]:>10.2f} {mean[OURS_H2O]:>13.2f}")
    medians = [1000 * statistics.median(totals[v.name]) for v in variants]
    print(f"{'step (median)':<20} {medians[0]:>10.2f} {medians[1]:>13.2f}")
    ratios = sorted(f / o for f, o in zip(totals[FULL], totals[OURS_H2O], strict=True))
    print(
        f"full / ours per step: median {statistics.median(ratios):.3f}, "
        f"range {ratios[0]:.3f}-{ratios[-1]:.3f}"
    )
    kv_full = args.batch * args.context * per_entry
    kv_ours = args.batch * kept * per_entry
    print(
        f"roofline bytes read per step: weights {weights / 2**20:.1f} MiB; KV full {kv_full / 2**20:.1f} MiB "
        f"(+ the cat's copy of it), ours {kv_ours / 2**20:.1f} MiB ({kept} entries): at most "
        f"{(weights + kv_full) / (weights + kv_ours):.3f}x fewer bytes for ours (ignoring the cat)"
    )


if __name__ == "__main__":
    main()
