"""KV memory, decode speed and quality of our H2O cache against the full cache and NVIDIA kvpress.

    python bench/h2o_speed.py [--context 2048] [--decode 256] [--score 128] [--batch 1] [--threads 1]
                              [--batches 1,4,16] [--batch-steps 32] [--kv-cap-mb 400] [--json PATH]
    python bench/h2o_speed.py --quick [--model DIR]   # smoke test: tiny sizes, verdicts not meaningful

Model: SmolLM2-135M-Instruct (offline, float32, CPU), loaded three times with the same weights: with our
observed attention (``data.llm.attention``, which hands softmax weights to ``EvictingCache``), with sdpa
(the model's fast path) and with eager attention (kvpress's ObservedAttentionPress needs the weights).
Text: ``pydoc_text()`` tokenized; row b of the batch is the consecutive chunk of ``context + score``
tokens starting at token b × (context + score): its first ``--context`` tokens are the context, the
next ``--score`` tokens are the scored continuation.

Variants. "ours" run every forward inside ``observing(cache.observe)``; their budget is
``H2OConfig(budget=0.2).budgets(context)`` (410 entries at 2048: 205 heavy + 205 recent for H2O; 4 sinks +
the newest for StreamingLLM). They compress to the budget during the prefill forward, right after each
layer's attention, and keep evicting one entry per decoded token. kvpress presses are applied the 0.5.5
way, ``with press(model): model(context, past_key_values=DynamicCache())``: a forward hook on each
attention layer prunes the cache once, at prefill (compression_ratio 0.8 keeps int(0.2 × context));
decoding then runs outside the press and the cache grows again. A pruned DynamicCache reports the kept
length as its sequence length, so (as kvpress's own pipeline does) every decode step passes explicit
``position_ids`` = the true position; all variants get the same explicit positions.

Our observed attention hands the cache column sums, not weights (``chunked_attention``: exact softmax
in blocks of query rows that skip the keys the causal mask hides), so the prefill never builds a layer's
full fp32 attention matrix; Streaming needs no scores and gets plain SDPA.

Parts (each timed; wall seconds are printed):
  1. prefill: one forward over the context per variant (``logits_to_keep=1``), timed alone, ``--repeat``
     times with the variants in turn (the fastest kept); then ``kv_nbytes(cache)``. Ours counts its
     per-entry position (int64) and score (float32) on top of keys and values. Targets: ours H2O bytes /
     full bytes <= 0.25; ours H2O prefill / full sdpa prefill <= 1.3.
  2. decode: from a copy of each prefilled cache, ``--decode`` greedy steps, one forward of one token
     per row per step, the argmax fed back (our own loop, not ``generate``, so every variant runs the
     same code). Variants take turns step by step, so a burst of load from elsewhere hits them alike;
     only the forward + argmax of each step is timed. Target at a context >= 2048: ours H2O tok/s /
     full (sdpa) tok/s >= 1.0 (kvpress ratios are printed for information).
  2b. end to end (robust to load): ``--e2e-rounds`` rounds of full sdpa and ours H2O, each a fresh
     prefill of the context then ``--decode`` greedy steps, the two variants interleaved (prefills in
     turn, which one goes first alternating by round; decode steps in turn) so load from elsewhere hits
     both alike. Per round the ratio full seconds / ours H2O seconds; the target is the median ratio
     (range printed), >= 1.2 at ``--batch``. The same at each of ``--e2e-batches`` (rows 0..b-1 of the
     text) is printed for information: the larger the batch, the larger the KV share of a step.
  3. quality: from the prefilled caches, the mean NLL (nats) and perplexity of the ``--score`` tokens
     that follow the context, teacher-forced: the prefill's last logits score the first one, then each
     true token is fed one at a time.
  4. batch throughput (the paper's headline, Table 3's setting at our scale): full sdpa and ours H2O
     prefill ``max(--batches)`` rows once; each batch b of ``--batches`` then decodes ``--batch-steps``
     greedy steps from rows 0..b-1 of that cache (variants in turn step by step); tok/s and the KV bytes
     at the end. Under a KV memory cap (``--kv-cap-mb``; ``--quick``: four rows of the full cache) the
     largest batch each fits is the cap over its per-row bytes (measured at the largest batch); a batch
     past the prefilled rows repeats them (a decode step's cost does not depend on which text a row
     holds) and is decoded too, and its measured bytes are checked against the cap. Targets: H2O tok/s /
     full tok/s at batch 16 >= 2; H2O's largest batch / full's >= 4. kvpress is not in this part: its
     presses prune once at prefill and the cache grows again while decoding, so no fixed cap holds.

kvpress 0.5.5 notes: importing kvpress wraps every attention function registered at that moment (for
head-wise masking), and the wrapper passes ``dropout`` positionally, which our function would take as
``scaling``; so kvpress is imported before our attention is registered. The wrapper then sits on the sdpa
path of every variant that uses sdpa (a shape check per call); eager attention does not go through it.
A press that fails here is reported in its row and the bench carries on. A benchmark reports, it does not
assert: the exit code is 0 whatever the numbers; each target prints a PASS/MISS line (``bench.targets``).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported, so intra-op pools start small

import argparse
import copy
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/h2o_speed.py` from anywhere

import torch
import transformers
from torch import Tensor
from transformers import DynamicCache

try:  # before register_observed_attention (see the header)
    import kvpress

    KVPRESS_ERROR: str | None = None
except Exception as ex:  # a broken kvpress install must not stop the rest of the bench
    kvpress, KVPRESS_ERROR = None, f"import kvpress failed: {type(ex).__name__}: {ex}"

from bench.targets import Target, print_targets
from data.config import CausalLMConfig
from data.llm.attention import observing, register_observed_attention
from data.llm.eviction import make_policy
from data.llm.kv_cache import EvictingCache, kv_nbytes
from data.llm.loader import load_causal_lm, offline_model
from data.llm.text import pydoc_text
from methods.h2o.config import H2OConfig

MODEL = offline_model("smollm2_135m")
QUICK = {
    "context": 64,
    "decode": 4,
    "score": 4,
    "warmup": 16,
    "batches": "1,2,4",
    "batch_steps": 3,
    "e2e_rounds": 2,
    "e2e_batches": "2",
}
BUDGET = 0.2  # ours: ratio of the context kept; kvpress: compression_ratio = 1 - BUDGET
LONG_CONTEXT = 2048  # the decode target applies from here on
FULL, OURS_H2O = "full sdpa", "ours H2O 20%"
KVP_OBSERVED, KVP_STREAMING = "kvpress ObsAttn 0.8", "kvpress Streaming 0.8"
BATCH_TARGET = 16  # part 4's tok/s target is at this batch
E2E_TARGET = ("prefill+decode s full / ours H2O", 1.2)  # part 2b: median over rounds at --batch
TARGETS = {  # ratio name -> (quantity, numerator, denominator, target, direction)
    "KV bytes ours H2O / full": ("kv_bytes", OURS_H2O, FULL, 0.25, "<="),
    "prefill s ours H2O / full": ("prefill_seconds", OURS_H2O, FULL, 1.3, "<="),
    "decode tok/s ours H2O / full": ("tokens_per_second", OURS_H2O, FULL, 1.0, ">="),
    # Information only.
    "prefill s kvpress ObsAttn / full": ("prefill_seconds", KVP_OBSERVED, FULL, None, ""),
    "prefill s kvpress Streaming / full": ("prefill_seconds", KVP_STREAMING, FULL, None, ""),
    "decode tok/s kvpress ObsAttn / full": ("tokens_per_second", KVP_OBSERVED, FULL, None, ""),
    "decode tok/s kvpress Streaming / full": ("tokens_per_second", KVP_STREAMING, FULL, None, ""),
    "KV bytes kvpress ObsAttn / full": ("kv_bytes", KVP_OBSERVED, FULL, None, ""),
}


@dataclass
class Variant:
    """One way of holding the KV cache: a model, a fresh cache, and a kvpress press for prefill or none."""

    name: str
    model: Any
    new_cache: Callable[[], Any]
    press: Any = None
    decode: bool = True
    score: bool = True
    error: str | None = None
    cache: Any = None  # after prefill
    last_logits: Tensor | None = None  # the prefill's prediction of the first token after the context
    row: dict[str, Any] = field(default_factory=dict)

    def prefill_press(self) -> AbstractContextManager:
        return self.press(self.model) if self.press is not None else nullcontext()


def observe(cache: Any) -> AbstractContextManager:
    """Our evicting cache only sees attention (and evicts) inside ``observing``."""
    return observing(cache.observe) if isinstance(cache, EvictingCache) else nullcontext()


def entries(cache: Any) -> str:
    """KV entries held per layer and KV head ("a-b" if layers differ)."""
    sizes = {layer.keys.shape[-2] for layer in cache.layers if layer.is_initialized}
    return str(min(sizes)) if len(sizes) == 1 else f"{min(sizes)}-{max(sizes)}"


@torch.no_grad()
def prefill(variant: Variant, context_ids: Tensor) -> float:
    """Fill ``variant.cache`` with the context (compressing it where the variant does); seconds taken."""
    cache = variant.new_cache()
    start = time.perf_counter()
    with variant.prefill_press(), observe(cache):
        out = variant.model(context_ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
    seconds = time.perf_counter() - start
    variant.cache, variant.last_logits = cache, out.logits[:, -1]
    return seconds


@torch.no_grad()
def step(variant: Variant, cache: Any, tokens: Tensor, position: int) -> Tensor:
    """One forward of one token per row at absolute ``position``; the next-token logits."""
    position_ids = torch.full_like(tokens, position)
    with observe(cache):
        out = variant.model(tokens, past_key_values=cache, position_ids=position_ids, use_cache=True)
    return out.logits[:, -1]


def decode_all(variants: list[Variant], context: int, steps: int, copy_caches: bool = True) -> None:
    """Greedy decoding from (a copy of, unless ``copy_caches`` is off) each prefilled cache, variants
    taking turns step by step."""
    caches = {v.name: copy.deepcopy(v.cache) if copy_caches else v.cache for v in variants}
    tokens = {v.name: v.last_logits.argmax(-1, keepdim=True) for v in variants}
    seconds = dict.fromkeys(caches, 0.0)
    generated: dict[str, list[Tensor]] = {v.name: [tokens[v.name]] for v in variants}
    for i in range(steps):
        for v in variants:
            start = time.perf_counter()
            tokens[v.name] = step(v, caches[v.name], tokens[v.name], context + i).argmax(-1, keepdim=True)
            seconds[v.name] += time.perf_counter() - start
            generated[v.name].append(tokens[v.name])
    reference = torch.cat(generated[FULL], dim=1) if FULL in generated else None
    for v in variants:
        batch = tokens[v.name].shape[0]
        same = None
        if reference is not None:
            differs = (torch.cat(generated[v.name], dim=1) != reference).any(dim=0).nonzero()
            same = int(differs[0]) if len(differs) else reference.shape[1]
        v.row["decode"] = {
            "steps": steps,
            "seconds": seconds[v.name],
            "tokens_per_second": steps * batch / seconds[v.name],
            "ms_per_step": 1000 * seconds[v.name] / steps,
            "entries_end": entries(caches[v.name]),
            "kv_bytes_end": kv_nbytes(caches[v.name]),
            "greedy_prefix_same_as_full": same,
        }


@torch.no_grad()
def score(variant: Variant, targets: Tensor, context: int) -> None:
    """Teacher-forced mean NLL of ``targets`` [batch, S] continuing the context, from the prefilled cache."""
    cache, logits = variant.cache, variant.last_logits
    nll = torch.nn.functional.cross_entropy(logits.float(), targets[:, 0], reduction="sum").item()
    start = time.perf_counter()
    for j in range(targets.shape[1] - 1):
        logits = step(variant, cache, targets[:, j : j + 1], context + j)
        nll += torch.nn.functional.cross_entropy(logits.float(), targets[:, j + 1], reduction="sum").item()
    mean = nll / targets.numel()
    variant.row["quality"] = {
        "nll": mean,
        "perplexity": math.exp(mean),
        "seconds": time.perf_counter() - start,
        "entries_end": entries(cache),
        "kv_bytes_end": kv_nbytes(cache),
    }


def load_models(model: CausalLMConfig) -> tuple[dict[str, Any], Any]:
    """The same weights three times: observed attention (ours), sdpa and eager; and the tokenizer."""
    observed = load_causal_lm(model, attn_implementation=register_observed_attention())
    sdpa = load_causal_lm(model, attn_implementation="sdpa").model
    eager = load_causal_lm(model, attn_implementation="eager").model
    return {"observed": observed.model, "sdpa": sdpa, "eager": eager}, observed.tokenizer


def ours_h2o(models: dict[str, Any], context: int) -> Variant:
    num_layers = models["observed"].config.num_hidden_layers
    total, recent = H2OConfig(policy="h2o", budget=BUDGET).budgets(context)
    return Variant(
        OURS_H2O, models["observed"], lambda: EvictingCache(num_layers, make_policy("h2o", recent), total)
    )


def make_variants(models: dict[str, Any], context: int) -> list[Variant]:
    """Fresh variants with budgets for ``context`` tokens; a press that cannot be built gets an error."""
    sdpa, eager, observed = models["sdpa"], models["eager"], models["observed"]
    num_layers = sdpa.config.num_hidden_layers
    total, recent = H2OConfig(policy="h2o", budget=BUDGET).budgets(context)
    variants = [
        Variant(FULL, sdpa, DynamicCache),
        Variant("full eager", eager, DynamicCache, score=False),
        ours_h2o(models, context),
        Variant(
            "ours Streaming 20%",
            observed,
            lambda: EvictingCache(num_layers, make_policy("streaming", recent), total),
        ),
    ]
    presses: list[tuple[str, Any, str]] = [
        (KVP_OBSERVED, eager, "ObservedAttentionPress"),
        (KVP_STREAMING, sdpa, "StreamingLLMPress"),
    ]
    for name, model, press_class in presses:
        variant = Variant(name, model, DynamicCache)
        if kvpress is None:
            variant.error = KVPRESS_ERROR
        else:
            try:
                variant.press = getattr(kvpress, press_class)(compression_ratio=1 - BUDGET)
            except Exception as ex:
                variant.error = f"{press_class}: {type(ex).__name__}: {ex}"
        variants.append(variant)
    return variants


def progress(message: str) -> None:
    """A line on stderr as each part starts (the report itself comes at the end)."""
    print(f"[h2o_speed {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run_guarded(variant: Variant, what: str, fn: Callable[[], Any]) -> None:
    """Run one part for one variant; a failure marks the variant and the bench goes on."""
    if variant.error is not None:
        return
    try:
        fn()
    except Exception as ex:
        variant.error = f"{what} failed: {type(ex).__name__}: {str(ex).splitlines()[0][:200]}"


def end_to_end(models: dict[str, Any], context_ids: Tensor, steps: int, rounds: int) -> dict[str, Any]:
    """Part 2b: per round, full sdpa's and ours H2O's (prefill + ``steps`` greedy steps) seconds, the two
    interleaved (see the header); the per-round ratios full / ours and their median and range."""
    context = context_ids.shape[1]
    pair = [Variant(FULL, models["sdpa"], DynamicCache), ours_h2o(models, context)]
    seconds: dict[str, list[float]] = {v.name: [] for v in pair}
    for r in range(rounds):
        order = pair if r % 2 == 0 else pair[::-1]
        total = {v.name: prefill(v, context_ids) for v in order}
        tokens = {v.name: v.last_logits.argmax(-1, keepdim=True) for v in order}
        for i in range(steps):
            for v in order:
                start = time.perf_counter()
                tokens[v.name] = step(v, v.cache, tokens[v.name], context + i).argmax(-1, keepdim=True)
                total[v.name] += time.perf_counter() - start
        for v in pair:
            seconds[v.name].append(total[v.name])
            v.cache = None
    ratios = sorted(f / o for f, o in zip(seconds[FULL], seconds[OURS_H2O], strict=True))
    return {
        "batch": context_ids.shape[0],
        "rounds": rounds,
        "steps": steps,
        "seconds": seconds,
        "ratios": ratios,
        "median": statistics.median(ratios),
        "min": ratios[0],
        "max": ratios[-1],
    }


def rows_of(cache: Any, index: Tensor) -> Any:
    """A cache holding rows ``index`` of ``cache``: fresh tensors, the original untouched."""
    picked = copy.copy(cache)
    picked.layers = [copy.copy(layer) for layer in cache.layers]
    picked.batch_select_indices(index)
    return picked


def batch_throughput(
    models: dict[str, Any], context_ids: Tensor, batches: list[int], steps: int, cap_mb: float | None
) -> dict[str, Any]:
    """Part 4: decode tok/s of full sdpa and ours H2O at each batch, and the largest batch under a KV cap."""
    context, n = context_ids.shape[1], context_ids.shape[0]
    variants = [Variant(FULL, models["sdpa"], DynamicCache), ours_h2o(models, context)]
    out: dict[str, Any] = {"rows_prefilled": n, "steps": steps, "batches": {}, "prefill_seconds": {}}
    for v in variants:
        progress(f"4. prefill {n} rows: {v.name}")
        out["prefill_seconds"][v.name] = prefill(v, context_ids)

    def decode_at(group: list[Variant], b: int) -> None:
        progress(f"4. batch {b}: " + ", ".join(v.name for v in group))
        index = torch.arange(b) % n
        subs = [Variant(v.name, v.model, v.new_cache, cache=rows_of(v.cache, index)) for v in group]
        for sub, v in zip(subs, group, strict=True):
            sub.last_logits = v.last_logits[index]
        decode_all(subs, context, steps, copy_caches=False)
        for sub in subs:
            d = sub.row["decode"]
            out["batches"].setdefault(sub.name, {})[b] = {
                "tokens_per_second": d["tokens_per_second"],
                "kv_bytes_end": d["kv_bytes_end"],
            }

    for b in batches:
        decode_at(variants, b)
    largest_run = max(batches)
    per_row = {v.name: out["batches"][v.name][largest_run]["kv_bytes_end"] / largest_run for v in variants}
    cap = cap_mb * 2**20 if cap_mb is not None else 4 * per_row[FULL]
    out["cap_bytes"], out["per_row_bytes"], out["largest"] = cap, per_row, {}
    for v in variants:
        largest = int(cap // per_row[v.name])
        out["largest"][v.name] = largest
        if largest > 0 and largest not in out["batches"][v.name]:
            decode_at([v], largest)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--context", type=int, default=2048, help="context tokens (>= 2048 for the target)")
    parser.add_argument("--decode", type=int, default=256, help="greedy decode steps timed per variant")
    parser.add_argument("--score", type=int, default=128, help="tokens after the context scored for NLL")
    parser.add_argument("--batch", type=int, default=1, help="rows: consecutive chunks of the text")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads for every variant")
    parser.add_argument("--warmup", type=int, default=128, help="context tokens of the untimed warm-up")
    parser.add_argument("--repeat", type=int, default=2, help="prefills per variant (the fastest kept)")
    parser.add_argument("--batches", default="1,4,16", help="part 4: comma-separated batch sizes ('' skips)")
    parser.add_argument("--batch-steps", type=int, default=32, help="part 4: decode steps per batch")
    parser.add_argument("--kv-cap-mb", type=float, default=400.0, help="part 4: KV memory cap (MiB)")
    parser.add_argument("--e2e-rounds", type=int, default=3, help="part 2b: interleaved end-to-end rounds")
    parser.add_argument(
        "--e2e-batches", default="4", help="part 2b: information batch sizes, comma-separated ('' skips)"
    )
    parser.add_argument("--model", type=Path, default=None, help="a local model folder (default SmolLM2)")
    parser.add_argument("--quick", action="store_true", help="smoke test: " + str(QUICK) + ", cap 4 rows")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args()
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
        args.kv_cap_mb, args.repeat = None, 1
    try:
        batches = [int(b) for b in args.batches.split(",") if b.strip()]
        e2e_batches = [int(b) for b in args.e2e_batches.split(",") if b.strip()]
    except ValueError:
        parser.error("--batches and --e2e-batches: comma-separated positive integers, e.g. 1,4,16")
    if any(b < 1 for b in batches + e2e_batches) or args.batch_steps < 1 or args.repeat < 1:
        parser.error("need batches of positive integers, --batch-steps >= 1 and --repeat >= 1")
    if args.e2e_rounds < 1:
        parser.error("need --e2e-rounds >= 1")
    if args.warmup < 8 or args.context < 8 or args.decode < 1 or args.score < 2 or args.batch < 1:
        parser.error("need --warmup and --context >= 8, --decode >= 1, --score >= 2, --batch >= 1")

    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()  # the tokenizer warns that the whole text exceeds 8k
    parts: dict[str, float] = {}
    start = time.perf_counter()
    model = MODEL if args.model is None else CausalLMConfig(name=str(args.model))
    models, tokenizer = load_models(model)
    ids = tokenizer(pydoc_text(), return_tensors="pt").input_ids[0]
    chunk = args.context + args.score
    needed = max([args.batch, *batches, *e2e_batches])
    if ids.numel() < needed * chunk:
        parser.error(f"pydoc_text() has {ids.numel()} tokens; {needed} rows × (context + score) need more")
    all_rows = ids[: needed * chunk].view(needed, chunk)
    rows = all_rows[: args.batch]
    context_ids, targets = rows[:, : args.context], rows[:, args.context :]
    variants = make_variants(models, args.context)
    parts["load models and text"] = time.perf_counter() - start

    # Warm-up, untimed: a short context through every step of every variant (first-call costs,
    # allocator growth, kvpress's hooks), with budgets for the short context. Errors surface later.
    start = time.perf_counter()
    warm = make_variants(models, args.warmup)
    for v in warm:
        run_guarded(v, "warm-up", lambda v=v: prefill(v, context_ids[:, : args.warmup]))
    for v in warm:
        run_guarded(v, "warm-up", lambda v=v: decode_all([v], args.warmup, 3))
        run_guarded(v, "warm-up", lambda v=v: score(v, targets[:, :4], args.warmup))
    parts["warm-up"] = time.perf_counter() - start

    # 1. prefill + memory, variants in turn, --repeat rounds, the fastest kept
    progress("1. prefill + memory")
    start = time.perf_counter()
    for _ in range(args.repeat):
        for v in variants:
            run_guarded(
                v, "prefill", lambda v=v: v.row.setdefault("prefill_runs", []).append(prefill(v, context_ids))
            )
    for v in variants:
        if v.error is None:
            v.row.update(prefill_seconds=min(v.row["prefill_runs"]))
            v.row.update(kv_bytes=kv_nbytes(v.cache), entries_prefill=entries(v.cache))
    parts["1 prefill + memory"] = time.perf_counter() - start

    # 2. decode, variants in turn
    progress("2. decode")
    start = time.perf_counter()
    decoders = [v for v in variants if v.decode and v.error is None]
    try:
        decode_all(decoders, args.context, args.decode)
    except Exception as ex:  # find the culprit one by one, so the others still get numbers
        print(f"decoding all together failed ({type(ex).__name__}); decoding one variant at a time")
        for v in decoders:
            run_guarded(v, "decode", lambda v=v: decode_all([v], args.context, args.decode))
    parts["2 decode"] = time.perf_counter() - start

    # 2b. end to end, full and ours H2O interleaved over rounds; information rows at larger batches
    e2e: dict[int, dict[str, Any]] = {}
    for b in dict.fromkeys([args.batch, *e2e_batches]):
        progress(f"2b. end to end, batch {b}, {args.e2e_rounds} rounds")
        start = time.perf_counter()
        try:
            e2e[b] = end_to_end(models, all_rows[:b, : args.context], args.decode, args.e2e_rounds)
        except Exception as ex:
            print(f"end to end at batch {b} failed: {type(ex).__name__}: {str(ex).splitlines()[0][:200]}")
        parts[f"2b end to end batch {b}"] = time.perf_counter() - start

    # 3. quality
    progress("3. quality")
    start = time.perf_counter()
    for v in variants:
        if v.score:
            run_guarded(v, "scoring", lambda v=v: score(v, targets, args.context))
    parts["3 quality"] = time.perf_counter() - start

    # 4. batch throughput under a KV memory cap
    progress("4. batch throughput")
    throughput = None
    if batches:
        for v in variants:  # free parts 1-3's caches first
            v.cache = None
        start = time.perf_counter()
        throughput = batch_throughput(
            models, all_rows[: max(batches), : args.context], batches, args.batch_steps, args.kv_cap_mb
        )
        parts["4 batch throughput"] = time.perf_counter() - start

    report(args, variants, parts, throughput, e2e)


def ratio_rows(variants: list[Variant], context: int) -> dict[str, dict[str, Any]]:
    """Each ratio of ``TARGETS``; ``pass`` is None for information rows."""
    by_name = {v.name: v.row for v in variants}

    def value(quantity: str, name: str) -> float | None:
        row = by_name.get(name, {})
        if quantity == "tokens_per_second":
            return row.get("decode", {}).get(quantity)
        return row.get(quantity)

    ratios = {}
    for ratio, (quantity, num, den, target, direction) in TARGETS.items():
        a, b = value(quantity, num), value(quantity, den)
        result = None if a is None or not b else a / b
        passed = None
        if target is not None and result is not None:
            passed = Target(ratio, result, target, direction).passed
        ratios[ratio] = {"value": result, "target": target, "direction": direction, "pass": passed}
    return ratios


def throughput_targets(throughput: dict[str, Any] | None) -> list[Target]:
    """Part 4's two targets (no value where the part did not run at batch 16)."""
    at = throughput["batches"] if throughput else {}
    full, ours = at.get(FULL, {}).get(BATCH_TARGET), at.get(OURS_H2O, {}).get(BATCH_TARGET)
    speedup = ours["tokens_per_second"] / full["tokens_per_second"] if full and ours else None
    largest = throughput["largest"] if throughput else {}
    fits = largest[OURS_H2O] / largest[FULL] if largest.get(FULL) else None
    return [
        Target(f"batch {BATCH_TARGET} decode tok/s ours H2O / full", speedup, 2.0, ">="),
        Target("largest batch under the KV cap ours H2O / full", fits, 4.0, ">="),
    ]


def report(
    args: argparse.Namespace,
    variants: list[Variant],
    parts: dict[str, float],
    throughput: dict[str, Any] | None = None,
    e2e: dict[int, dict[str, Any]] | None = None,
) -> None:
    total, recent = H2OConfig(policy="h2o", budget=BUDGET).budgets(args.context)
    ratios = ratio_rows(variants, args.context)
    print(
        f"\nSmolLM2-135M-Instruct float32 CPU, torch threads {torch.get_num_threads()}, OMP_NUM_THREADS "
        f"{os.environ.get('OMP_NUM_THREADS')}, torch {torch.__version__}, transformers "
        f"{transformers.__version__}, kvpress {_kvpress_version()}"
    )
    print(
        f"text: pydoc_text(), batch {args.batch} (row b = consecutive chunk b of {args.context}+{args.score} "
        f"tokens), context {args.context}, decode {args.decode} steps, score {args.score} tokens"
    )
    print(
        f"ours: budget {total} entries per layer and KV head (H2O: {total - recent} heavy + {recent} recent; "
        f"Streaming: 4 sinks + newest), evicting at prefill and at every step"
    )
    print("kvpress: compression_ratio 0.8, pruned once at prefill; its cache grows by one entry per step")
    print("warm-up: the whole pipeline once on a short context, untimed\n")

    print("1. prefill (one forward over the context, timed alone) and KV memory right after it")
    print(f"{'variant':<22} {'prefill s':>9} {'KV MB':>8} {'entries':>8} {'KV / full':>9}")
    full_bytes = next((v.row.get("kv_bytes") for v in variants if v.name == FULL), None)
    for v in variants:
        if v.error is not None and "kv_bytes" not in v.row:
            print(f"{v.name:<22} {v.error}")
            continue
        share = f"{v.row['kv_bytes'] / full_bytes:9.3f}" if full_bytes else f"{'-':>9}"
        print(
            f"{v.name:<22} {v.row['prefill_seconds']:>9.2f} {v.row['kv_bytes'] / 2**20:>8.2f} "
            f"{v.row['entries_prefill']:>8} {share}"
        )
    print("(entries: per layer and KV head; ours' bytes include a position and a score per entry)\n")

    print(f"2. greedy decode, {args.decode} steps of {args.batch} token(s), variants in turn step by step")
    print(f"{'variant':<22} {'seconds':>8} {'tok/s':>8} {'ms/step':>8} {'entries end':>11} {'= full':>6}")
    for v in variants:
        if not v.decode:
            continue
        d = v.row.get("decode")
        if d is None:
            print(f"{v.name:<22} {v.error or 'not run'}")
            continue
        same = d["greedy_prefix_same_as_full"]
        print(
            f"{v.name:<22} {d['seconds']:>8.2f} {d['tokens_per_second']:>8.2f} {d['ms_per_step']:>8.1f} "
            f"{d['entries_end']:>11} {'-' if same is None else same:>6}"
        )
    print(f"(= full: leading greedy tokens identical to full sdpa's, of {args.decode + 1})\n")

    print(f"3. quality: teacher-forced NLL of the {args.score} tokens after the context")
    print(f"{'variant':<22} {'NLL':>7} {'PPL':>8} {'entries end':>11} {'KV MB end':>9}")
    for v in variants:
        if not v.score:
            continue
        q = v.row.get("quality")
        if q is None:
            print(f"{v.name:<22} {v.error or 'not run'}")
            continue
        print(
            f"{v.name:<22} {q['nll']:>7.4f} {q['perplexity']:>8.3f} {q['entries_end']:>11} "
            f"{q['kv_bytes_end'] / 2**20:>9.2f}"
        )
    print(
        "(kvpress compresses only at prefill, so its cache grows while scoring; ours keeps evicting,\n"
        " so it ends with fewer entries: the comparison is not at equal memory at the end)\n"
    )

    e2e = e2e or {}
    if e2e:
        report_end_to_end(e2e, args.batch)
    if throughput is not None:
        report_throughput(throughput)

    print("information (kvpress against full sdpa):")
    for ratio, r in ratios.items():
        if r["target"] is None:
            value = "   -  " if r["value"] is None else f"{r['value']:6.3f}"
            print(f"  {ratio:<46} {value}")
    small = (
        "" if args.context >= LONG_CONTEXT else f"context {args.context} < {LONG_CONTEXT}: indicative only"
    )
    targets = [
        Target(ratio, r["value"], r["target"], r["direction"], note=small)
        for ratio, r in ratios.items()
        if r["target"] is not None
    ]
    at_batch = e2e.get(args.batch)
    spread = (
        f"median of {at_batch['rounds']} rounds, range {at_batch['min']:.3f}-{at_batch['max']:.3f}"
        if at_batch
        else ""
    )
    targets.append(
        Target(
            E2E_TARGET[0],
            at_batch["median"] if at_batch else None,
            E2E_TARGET[1],
            ">=",
            note="; ".join(filter(None, [small, spread])),
        )
    )
    small_batch = BATCH_TARGET not in (throughput or {}).get("batches", {}).get(FULL, {})
    for target in throughput_targets(throughput):
        target.note = small or ("not run at batch 16" if small_batch and "tok/s" in target.name else "")
        targets.append(target)
    print()
    print_targets(targets, f"targets (ours H2O {BUDGET:.0%} against full sdpa)")
    print("\nwall seconds: " + ", ".join(f"{k} {s:.1f}" for k, s in parts.items()))

    if args.json is not None:
        record = {
            "context": args.context,
            "decode": args.decode,
            "score": args.score,
            "batch": args.batch,
            "threads": torch.get_num_threads(),
            "budget_entries": total,
            "recent_entries": recent,
            "variants": {v.name: {**v.row, "error": v.error} for v in variants},
            "ratios": ratios,
            "batch_throughput": throughput,
            "end_to_end": {str(b): r for b, r in e2e.items()},
            "part_seconds": parts,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=2) + "\n")
        print(f"\nwrote {args.json}")


def report_end_to_end(e2e: dict[int, dict[str, Any]], batch: int) -> None:
    """Part 2b's table: per batch, median seconds of each variant and the per-round ratio's median/range."""
    print("2b. end to end: fresh prefill + greedy decode, full sdpa and ours H2O interleaved, per round")
    print(
        f"{'batch':>5} {'rounds':>6} {'steps':>5} {'full s':>8} {'ours s':>8} {'full/ours':>9} {'range':>13}"
    )
    for b, r in e2e.items():
        full, ours = (statistics.median(r["seconds"][name]) for name in (FULL, OURS_H2O))
        role = "target" if b == batch else "information"
        print(
            f"{b:>5} {r['rounds']:>6} {r['steps']:>5} {full:>8.2f} {ours:>8.2f} {r['median']:>9.3f} "
            f"{r['min']:>6.3f}-{r['max']:<6.3f} ({role})"
        )
    print("(full/ours: median over rounds of full seconds / ours H2O seconds in the same round)\n")


def report_throughput(t: dict[str, Any]) -> None:
    """Part 4's table: tok/s and KV MB per batch, then the largest batch each variant fits."""
    cap = t["cap_bytes"] / 2**20
    print(
        f"4. batch throughput: {t['steps']} greedy steps per batch from {t['rows_prefilled']} prefilled rows "
        f"(prefill s: " + ", ".join(f"{k} {v:.1f}" for k, v in t["prefill_seconds"].items()) + ")"
    )
    print(f"{'variant':<22} {'batch':>5} {'tok/s':>8} {'KV MB':>9} {'fits cap':>8}")
    for name, by_batch in t["batches"].items():
        for b, r in sorted(by_batch.items()):
            fits = "yes" if r["kv_bytes_end"] <= t["cap_bytes"] else "no"
            print(
                f"{name:<22} {b:>5} {r['tokens_per_second']:>8.2f} "
                f"{r['kv_bytes_end'] / 2**20:>9.1f} {fits:>8}"
            )
    print(f"KV cap {cap:.1f} MB; largest batch that fits (cap // measured bytes per row):")
    for name, largest in t["largest"].items():
        print(f"  {name:<22} {largest:>5}  ({t['per_row_bytes'][name] / 2**20:.2f} MB per row)")
    print("(rows past the prefilled ones repeat them; KV MB at the end of the steps, the most they hold)\n")


def _kvpress_version() -> str | None:
    """The installed kvpress version (kvpress has no ``__version__``), or None."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("kvpress")
    except PackageNotFoundError:
        return None


if __name__ == "__main__":
    main()
