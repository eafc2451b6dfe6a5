"""The block × timestep heat-map of a diffusion_probe grid sweep, and its best cell.

    python -m methods.diffusion_cls.heatmap <sweep dir> [--metric val_acc]  # heatmap.png/.md, prints it
    python -m methods.diffusion_cls.heatmap <sweep dir> --best  # prints `method.block=.. method.t=..`

The best cell is picked on ``val_acc`` (a held-out share of the training split), never on the test set.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

BLOCK_ORDER = ("down", "mid", "up")


def block_key(name: str) -> tuple[int, int]:
    """Network order: diffusers levels (down.<i>, mid, up.<i>), then the paper's 1-based ADM numbers."""
    if name.isdigit():
        return len(BLOCK_ORDER), int(name)
    kind, _, idx = name.partition(".")
    return BLOCK_ORDER.index(kind), int(idx or 0)


def grid(sweep: Path, metric: str) -> tuple[list[str], list[int], np.ndarray]:
    """(blocks in network order, timesteps, mean of ``metric`` over seeds; NaN where missing)."""
    cells: dict[tuple[str, int], list[float]] = {}
    for path in sorted(sweep.rglob("results.json")):
        r = json.loads(path.read_text())
        m = r.get("config", {}).get("method", {})
        if (
            r.get("status") != "completed"
            or metric not in r.get("metrics", {})
            or m.get("features") != "unet"
        ):
            continue
        cells.setdefault((m["block"], int(m["t"])), []).append(float(r["metrics"][metric]))
    blocks = sorted({b for b, _ in cells}, key=block_key)
    steps = sorted({t for _, t in cells})
    acc = np.full((len(blocks), len(steps)), np.nan)
    for (b, t), values in cells.items():
        acc[blocks.index(b), steps.index(t)] = np.mean(values)
    return blocks, steps, acc


def best_cell(blocks: list[str], steps: list[int], acc: np.ndarray) -> tuple[str, int, float]:
    i, j = np.unravel_index(np.nanargmax(acc), acc.shape)
    return blocks[i], steps[j], float(acc[i, j])


def plot(path: Path, blocks: list[str], steps: list[int], acc: np.ndarray, metric: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.2 * len(steps) + 2, 0.6 * len(blocks) + 1.5))
    im = ax.imshow(acc, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(steps)), [str(t) for t in steps])
    ax.set_yticks(range(len(blocks)), blocks)
    ax.set_xlabel("timestep t")
    ax.set_ylabel("U-Net block (encoder → decoder)")
    for i in range(len(blocks)):
        for j in range(len(steps)):
            if not np.isnan(acc[i, j]):
                light = im.norm(acc[i, j]) > 0.6  # dark text on the bright end of viridis
                ax.text(
                    j,
                    i,
                    f"{acc[i, j]:.2f}",
                    ha="center",
                    va="center",
                    color="k" if light else "w",
                    fontsize=8,
                )
    fig.colorbar(im, ax=ax, label=metric)
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m methods.diffusion_cls.heatmap", description=__doc__.splitlines()[0]
    )
    parser.add_argument("sweep", type=Path)
    parser.add_argument("--metric", default="val_acc")
    parser.add_argument("--best", action="store_true", help="print the best cell as overrides and exit")
    args = parser.parse_args(argv)
    blocks, steps, acc = grid(args.sweep, args.metric)
    if not blocks:
        print(f"heatmap: no completed unet probe with {args.metric} under {args.sweep}", file=sys.stderr)
        return 2
    block, t, value = best_cell(blocks, steps, acc)
    if args.best:
        print(f"method.block={block} method.t={t}")
        return 0
    stem = "heatmap" if args.metric == "val_acc" else f"heatmap_{args.metric}"
    plot(args.sweep / f"{stem}.png", blocks, steps, acc, args.metric)
    lines = [f"| block \\ t | {' | '.join(map(str, steps))} |", "|---|" + "---:|" * len(steps)]
    for i, b in enumerate(blocks):
        lines.append(f"| {b} | " + " | ".join("—" if np.isnan(v) else f"{v:.3f}" for v in acc[i]) + " |")
    lines += [
        "",
        f"best by {args.metric}: block {block}, t = {t} ({value:.3f})",
        "",
        f"![heat-map]({stem}.png)",
    ]
    text = "\n".join(lines)
    (args.sweep / f"{stem}.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
