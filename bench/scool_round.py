"""Time per SCooL communication round: all devices batched (torch.func vmap over stacked weights) against
a Python loop over per-device modules, in the same process on the same data.

    python bench/scool_round.py [--devices 100] [--local-steps 10] [--batch 10] [--loss-batch 10]
                                [--input 64] [--hidden 64] [--rounds 3] [--threads 1]

A round = `--local-steps` SGD steps of every device on its own batch, the E-step input L_ij (every model
on every device's batch of `--loss-batch`), and one mixing θ_i ← Σ_j w_ij θ_j. Inputs are random
(digits-sized by default, the small table's model; --input 784 --hidden 200 for MNIST-sized);
both engines start from the same weights and see the same batches. The median
round of `--rounds` is reported. Target: batched / loop speed-up >= 5 on CPU with 100 devices.
A benchmark reports, it does not assert.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from methods.scool.batched import BatchedDevices, LoopedDevices, make_model


def one_round(
    engine: BatchedDevices | LoopedDevices, data: list, cross: tuple, w: torch.Tensor
) -> dict[str, float]:
    """Seconds of the round's three parts: local SGD steps, the L_ij matrix, the mixing."""
    t0 = time.perf_counter()
    for x, y in data:
        engine.sgd_step(x, y, lr=0.01, weight_decay=5e-4)
    t1 = time.perf_counter()
    engine.cross_loss(*cross)
    t2 = time.perf_counter()
    engine.mix(w)
    t3 = time.perf_counter()
    return {"local_sgd": t1 - t0, "cross_loss": t2 - t1, "mix": t3 - t2, "round": t3 - t0}


def bench(n: int, d_in: int, hidden: int, args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    model = make_model("mlp", (d_in,), 10, [hidden])
    batched, looped = BatchedDevices(model, n), LoopedDevices(model, n)
    data = [
        (torch.randn(n, args.batch, d_in), torch.randint(0, 10, (n, args.batch)))
        for _ in range(args.local_steps)
    ]
    cross = (torch.randn(n, args.loss_batch, d_in), torch.randint(0, 10, (n, args.loss_batch)))
    w = torch.softmax(torch.randn(n, n), dim=1)
    one_round(batched, data[:1], cross, w)  # warm-up (vmap tracing, allocator)
    one_round(looped, data[:1], cross, w)
    times: dict[str, list[dict[str, float]]] = {"batched": [], "loop": []}
    for _ in range(args.rounds):  # alternate, so a burst of load from elsewhere hits both alike
        times["batched"].append(one_round(batched, data, cross, w))
        times["loop"].append(one_round(looped, data, cross, w))
    med = {k: {part: statistics.median(t[part] for t in v) for part in v[0]} for k, v in times.items()}
    print(
        f"scool round: {n} devices, {args.local_steps} local steps (batch {args.batch}), L_ij on "
        f"{args.loss_batch} per device, MLP {d_in}-{hidden}-10, {args.threads} thread(s), "
        f"median of {args.rounds}"
    )
    for k, v in med.items():
        parts = "  ".join(f"{part} {ms * 1000:8.1f}" for part, ms in v.items())
        print(f"  {k:8s} ms: {parts}")
    ratio = {part: med["loop"][part] / med["batched"][part] for part in med["loop"]}
    print(
        "  speed-up batched / loop: "
        + "  ".join(f"{p} {r:.1f}x" for p, r in ratio.items())
        + "  (target round >= 5x)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("--local-steps", type=int, default=10)
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--loss-batch", type=int, default=10)
    ap.add_argument("--input", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    bench(args.devices, args.input, args.hidden, args)


if __name__ == "__main__":
    main()
