"""MerA costs: the OT merge against one tuning epoch, and MerA's single adapter against AdapterFusion.

    python bench/mera_cost.py [--threads 1] [--json PATH]

Same process, same encoder (all-MiniLM-L6-v2, offline, 6 layers, d = 384), same inputs:

1. Merge cost vs number of adapters N and bottleneck width r (weight-based exact OT per layer, float64),
   as a fraction of one epoch of few-shot tuning (K = 16 per class, 32 examples of the target, batch 8).
   Target: the OT merge stays a small fraction (< 10%) of one epoch.
2. Trainable parameters and inference latency: MerA keeps one adapter (+ head) whatever N is, while
   AdapterFusion runs all N adapters and trains per-layer Q/K/V over them. Printed as ratios
   AdapterFusion / MerA. A benchmark reports; exit code 0.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from data.text_tasks import make_task
from methods.mera.config import TextEncoderConfig
from methods.mera.merge import merge
from methods.mera.model import (
    Classifier,
    adapter_config,
    load_encoder,
    predict,
    tokenize,
    train,
    trainable_parameters,
)

D, LAYERS = 384, 6


def random_adapters(n: int, r: int, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    return [
        {
            f"encoder.layer.{i}.output": {
                "down_w": torch.randn(r, D, generator=g) * 0.02,
                "down_b": torch.randn(r, generator=g) * 0.02,
                "up_w": torch.randn(D, r, generator=g) * 0.02,
                "up_b": torch.randn(D, generator=g) * 0.02,
            }
            for i in range(LAYERS)
        }
        for _ in range(n)
    ]


def timed(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def tuning_epoch_seconds(enc_cfg: TextEncoderConfig) -> float:
    """One epoch of stage 3 at K = 16: 32 target examples in batches of 8 (adapter + head train)."""
    task = make_task("entail/list", 32, seed=0)
    encoder, tok = load_encoder(enc_cfg)
    encoder.add_adapter("t", config=adapter_config(16))
    encoder.train_adapter("t")
    model = Classifier(encoder, 2)
    enc = tokenize(tok, task, 32)
    train(model, model.parameters(), enc, task.labels, 4, 8, 1e-3, 0)  # warm-up
    return timed(lambda: train(model, model.parameters(), enc, task.labels, 4, 8, 1e-3, 0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    enc_cfg = TextEncoderConfig()
    out: dict = {"merge": [], "fusion": []}

    epoch = tuning_epoch_seconds(enc_cfg)
    print(f"one tuning epoch (K=16, 32 examples, batch 8, MiniLM-L6 + adapter): {epoch * 1000:.0f} ms")
    print(f"{'N':>3} {'r':>4} {'OT merge ms':>12} {'plain avg ms':>13} {'OT / epoch':>11}")
    for r in (6, 24, 96):
        for n in (2, 4, 8, 16):
            adapters = random_adapters(n, r)
            ot = timed(lambda a=adapters: merge(a, "weight"))
            avg = timed(lambda a=adapters: merge(a, "none"))
            out["merge"].append({"n": n, "r": r, "ot_s": ot, "avg_s": avg, "ot_over_epoch": ot / epoch})
            print(f"{n:>3} {r:>4} {ot * 1000:>12.1f} {avg * 1000:>13.1f} {ot / epoch:>11.3f}")

    texts = make_task("entail/list", 64, seed=1)
    print(
        f"\n{'N':>3} {'MerA params':>12} {'Fusion params':>14} {'ratio':>6} "
        f"{'MerA ms':>8} {'Fusion ms':>10} {'ratio':>6}"
    )
    for n in (2, 4, 6):
        from adapters import Fuse

        encoder, tok = load_encoder(enc_cfg)
        enc = tokenize(tok, texts, 32)
        names = [f"a{i}" for i in range(n)]
        for name in [*names, "merged"]:
            encoder.add_adapter(name, config=adapter_config(16))
        encoder.train_adapter("merged")
        model = Classifier(encoder, 2)
        mera_params = trainable_parameters(model)
        mera_ms = 1000 * timed(lambda m=model, e=enc: predict(m, e, 64))
        encoder.add_adapter_fusion(Fuse(*names))
        encoder.train_adapter_fusion(Fuse(*names))
        fusion_params = trainable_parameters(model)
        fusion_ms = 1000 * timed(lambda m=model, e=enc: predict(m, e, 64))
        row = {"n": n, "mera_params": mera_params, "fusion_params": fusion_params}
        row |= {"mera_ms": mera_ms, "fusion_ms": fusion_ms}
        out["fusion"].append(row)
        print(
            f"{n:>3} {mera_params:>12,} {fusion_params:>14,} {fusion_params / mera_params:>6.1f} "
            f"{mera_ms:>8.0f} {fusion_ms:>10.0f} {fusion_ms / mera_ms:>6.2f}"
        )
    worst = max(m["ot_over_epoch"] for m in out["merge"])
    print(f"\nworst OT merge / tuning epoch: {worst:.3f} (target < 0.1)")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
