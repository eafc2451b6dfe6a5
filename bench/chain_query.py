"""Time of one CHAIN query round's selection on a large pool: BADGE and coreset (and the cheap ones).

    python bench/chain_query.py [--pool 50000] [--dim 512] [--classes 10] [--labelled 1000] [--k 100]
                                [--typiclust] [--threads 1]

Random features and softmax outputs stand in for a model's (the selection cost does not depend on their
values). BADGE's K·d gradient embeddings are never materialised (factorised distances) and k-centre keeps
one running minimum per pool point, so both are O(N·k) time and O(N) memory. Target: seconds for a 50k
pool. TypiClust (k-means into |L| + k clusters) is timed with --typiclust. A benchmark reports, it does
not assert.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from methods.chain.strategies import select


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pool", type=int, default=50_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--labelled", type=int, default=1000)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--typiclust", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(args.pool, args.classes, generator=gen) * 2, dim=-1)
    pool = torch.randn(args.pool, args.dim, generator=gen)
    labelled = torch.randn(args.labelled, args.dim, generator=gen)
    strategies = ["random", "entropy", "margin", "least_confidence", "coreset", "badge"]
    strategies += ["typiclust"] if args.typiclust else []
    print(
        f"chain query: pool {args.pool} × {args.dim}-d, {args.classes} classes, {args.labelled} labelled, "
        f"k = {args.k}, {args.threads} thread(s)"
    )
    for name in strategies:
        t0 = time.perf_counter()
        chosen = select(name, args.k, probs, pool, labelled, gen, seed=0)
        dt = time.perf_counter() - t0
        print(f"  {name:16s} {dt:8.2f} s  ({len(set(chosen.tolist()))} distinct)")


if __name__ == "__main__":
    main()
