"""One figure for a SCooL sweep: per partition, the true groups beside each algorithm's final mixing graph.

    python -m methods.scool.figure <sweep dir> [--seed 0]   ->   <sweep dir>/graphs.png

Reads every run's graph.npy (written by methods/scool/method.py) and rebuilds the run's partition from its
recorded config (the same seeded code path), so the true groups need not be stored.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from data.config import ImageDataConfig
from data.vision.datasets import load_image_splits
from methods.scool.partition import make_partition

PARTITIONS = ("noniid", "noniid_sbm", "conflict")
ALGOS = ("fedavg", "dpsgd", "scool_sbm", "scool_attention")


def true_groups(record: dict) -> np.ndarray:
    cfg, m = record["config"], record["config"]["method"]
    data = OmegaConf.structured(ImageDataConfig(**(cfg["data"] or {})))
    train, _ = load_image_splits(data, seed=record["seed"])
    part = make_partition(
        train.labels.numpy(),
        train.num_classes,
        m["partition"],
        m["n_devices"],
        m["classes_per_device"] or max(2, train.num_classes // 10),  # SCooLConfig.classes_for
        m["groups"],
        np.random.default_rng(record["seed"]),
        m["samples_per_class"],
    )
    return part.group


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweep", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    runs = {}
    for path in sorted(args.sweep.rglob("graph.npy")):
        record = json.loads((path.parent / "results.json").read_text())
        m = record["config"]["method"]
        if record["seed"] == args.seed and record["status"] == "completed":
            runs[m["partition"], m["algo"]] = (np.load(path), record)
    parts = [p for p in PARTITIONS if any((p, a) in runs for a in ALGOS)]
    if not parts:
        raise SystemExit(f"no graph.npy of seed {args.seed} under {args.sweep}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(parts), 1 + len(ALGOS), figsize=(3.2 * (1 + len(ALGOS)), 3.2 * len(parts)))
    axes = np.atleast_2d(axes)
    for r, part in enumerate(parts):
        record = next(rec for (p, _), (_, rec) in runs.items() if p == part)
        group = true_groups(record)
        order = np.argsort(group, kind="stable")
        axes[r, 0].imshow((group[order][:, None] == group[order][None, :]), cmap="Greys")
        axes[r, 0].set_title(f"{part}: true groups")
        for c, algo in enumerate(ALGOS, start=1):
            ax = axes[r, c]
            if (part, algo) not in runs:
                ax.axis("off")
                continue
            w = runs[part, algo][0][np.ix_(order, order)].copy()
            np.fill_diagonal(w, np.nan)
            acc = runs[part, algo][1]["metrics"]["accuracy"]
            ax.imshow(w, cmap="viridis")
            ax.set_title(f"{algo} ({acc:.1%})")  # results.json: a fraction
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"SCooL mixing weights w_ij (j ≠ i), devices sorted by true group, seed {args.seed}")
    fig.tight_layout()
    out = args.sweep / "graphs.png"
    fig.savefig(out, dpi=90, metadata={"Software": None})
    print(out)


if __name__ == "__main__":
    main()
