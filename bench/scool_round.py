"""Time per SCooL communication round: all devices batched (torch.func vmap over stacked weights) against
a Python loop over per-device modules, in the same process on the same data.

    python bench/scool_round.py [--devices 100] [--local-steps 10] [--batch 10] [--loss-batch 10]
                                [--input 64] [--hidden 64] [--rounds 3] [--threads 1]
                                [--ranks 1,2] [--rank-devices 40] [--repeats 3] [--skip-loop]

A round = `--local-steps` SGD steps of every device on its own batch, the E-step input L_ij (every model
on every device's batch of `--loss-batch`), and one mixing θ_i ← Σ_j w_ij θ_j. Inputs are random
(digits-sized by default, the small table's model; --input 784 --hidden 200 for MNIST-sized);
both engines start from the same weights and see the same batches. The median
round of `--rounds` is reported. Target: batched / loop speed-up >= 5 on CPU with 100 devices.

Second section, SCooL across ranks (issue 16; methods/scool/shard.py): the same round with the devices
split over `--ranks` gloo processes on CPU (`--rank-devices` in total, each process one thread): local
steps of its own devices, its rows of L_ij all-gathered, the device models all-gathered and its rows of
the M-step θ_i ← θ_i − Σ_j w_ij Δ_j. Target: 2 ranks >= 1.3x the rounds/s of 1 rank at 40 devices (it
needs 2 free cores; on a loaded machine the ratio says so). A benchmark reports, it does not assert.
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
from methods.scool.shard import DeviceShard


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


def sharded_round(
    devs: BatchedDevices, shard: DeviceShard, data: list, cross: tuple, w: torch.Tensor
) -> None:
    """One SCooL round of this rank's devices, as methods/scool/method.py runs it."""
    before = devs.flat()
    for x, y in data:
        devs.sgd_step(x[shard.rows], y[shard.rows], lr=0.01, weight_decay=5e-4)
    after = devs.flat()
    shard.gather(devs.cross_loss(*cross))  # (n, n) on every rank
    before_all, after_all = shard.gather_dict(before), shard.gather_dict(after)
    devs.load(
        {
            k: before[k] - torch.einsum("ij,j...->i...", w[shard.rows], before_all[k] - after_all[k])
            for k in before
        }
    )


def _rank_worker(rank: int, world: int, store: str, out: str, args: argparse.Namespace) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    if world > 1:
        dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        n = args.rank_devices
        torch.manual_seed(0)
        model = make_model("mlp", (args.input,), 10, [args.hidden])
        shard = DeviceShard(n=n, rank=rank, world=world)
        devs = BatchedDevices(model, shard.size)
        g = torch.Generator().manual_seed(0)
        data = [
            (
                torch.randn(n, args.batch, args.input, generator=g),
                torch.randint(0, 10, (n, args.batch), generator=g),
            )
            for _ in range(args.local_steps)
        ]
        cross = (torch.randn(n, args.loss_batch, args.input), torch.randint(0, 10, (n, args.loss_batch)))
        w = torch.softmax(torch.randn(n, n, generator=g), dim=1)
        sharded_round(devs, shard, data[:1], cross, w)  # warm-up
        times = []
        for _ in range(args.rounds):
            if world > 1:
                dist.barrier()
            t0 = time.perf_counter()
            sharded_round(devs, shard, data, cross, w)
            if world > 1:
                dist.barrier()
            times.append(time.perf_counter() - t0)
        if rank == 0:
            Path(out).write_text(str(statistics.median(times)))
    finally:
        if world > 1:
            dist.destroy_process_group()


def bench_ranks(args: argparse.Namespace) -> None:
    import tempfile

    import torch.multiprocessing as mp

    runs: dict[int, list[float]] = {world: [] for world in args.ranks}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):  # 1, 2, 1, 2, ...: a burst of load from elsewhere hits both alike
            for world in args.ranks:
                out, store = f"{tmp}/round.{world}.{rep}", f"{tmp}/store.{world}.{rep}"
                mp.spawn(_rank_worker, args=(world, store, out, args), nprocs=world, join=True)
                runs[world].append(float(Path(out).read_text()))
    seconds = {world: statistics.median(v) for world, v in runs.items()}
    print(
        f"scool round across ranks: {args.rank_devices} devices in total, {args.local_steps} local steps, "
        f"MLP {args.input}-{args.hidden}-10, gloo on CPU, 1 thread per process, median of {args.repeats} "
        f"launches × {args.rounds} rounds "
        f"({os.cpu_count()} CPUs here, load average {os.getloadavg()[0]:.1f})"
    )
    base = seconds[args.ranks[0]]
    for world, t in seconds.items():
        print(f"  {world} rank(s): {t * 1000:8.1f} ms/round  {1 / t:7.2f} rounds/s  {base / t:.2f}x")
    if 1 in seconds and 2 in seconds:
        ratio = seconds[1] / seconds[2]
        verdict = "PASS" if ratio >= 1.3 else "MISS"
        print(
            f"TARGET scool rounds/s 2 ranks / 1 rank at {args.rank_devices} devices: {ratio:.2f} "
            f"(target >= 1.3) {verdict}"
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
    ap.add_argument("--ranks", type=lambda s: [int(r) for r in s.split(",") if r], default=[1, 2])
    ap.add_argument("--rank-devices", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3, help="launches per number of ranks, alternated")
    ap.add_argument("--skip-loop", action="store_true", help="only the across-ranks section")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if not args.skip_loop:
        bench(args.devices, args.input, args.hidden, args)
    if args.ranks:
        bench_ranks(args)


if __name__ == "__main__":
    main()
