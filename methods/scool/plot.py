"""The learned cooperation graph beside the true group structure (devices ordered by true group)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_graph(path: Path, w: np.ndarray, group: np.ndarray, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = np.argsort(group, kind="stable")
    truth = (group[order][:, None] == group[order][None, :]).astype(float)
    learned = w[np.ix_(order, order)].copy()
    np.fill_diagonal(learned, np.nan)  # the self weight would swamp the colour scale
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 4.8))
    axes[0].imshow(truth, cmap="Greys", interpolation="nearest")
    axes[0].set_title("true groups (same classes and labels)")
    im = axes[1].imshow(learned, cmap="viridis", interpolation="nearest")
    axes[1].set_title(f"learned mixing weights w_ij (j ≠ i)\n{title}")
    fig.colorbar(im, ax=axes[1], fraction=0.046)
    for ax in axes:
        ax.set_xlabel("device j (sorted by group)")
        ax.set_ylabel("device i")
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)
