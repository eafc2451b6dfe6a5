"""Diffusion feature extraction throughput, and what the on-disk cache buys a second probe sweep.

    python bench/diffusion_features.py [--blocks 5] [--timesteps 10,50,150,400] [--threads 1] [--json PATH]

A tiny U-Net (conf/model/tiny_unet.yaml, random weights: extraction cost does not depend on training) on
the digits training split. Sweep 1 fills an empty cache (one U-Net pass per timestep stores every block);
sweep 2 asks for the same (block, t) cells and reads them from disk. Both sweeps also fit the same quick
linear probe per cell, so two ratios are printed: features only, and the whole sweep. Target: the cached
features ≥ 10× faster than extracting again. A benchmark reports; exit code 0.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from data.config import ImageDataConfig
from data.vision.datasets import load_image_splits
from data.vision.options import ProbeConfig
from data.vision.probes import train_linear_probe
from methods.diffusion_cls.ddpm import build_unet, to_model_space
from methods.diffusion_cls.features import FeatureCache, block_modules
from methods.diffusion_cls.method import standardize

TINY = {
    "sample_size": 8,
    "in_channels": 1,
    "block_out_channels": [32, 64],
    "layers_per_block": 1,
    "norm_num_groups": 8,
}


def sweep(cache: FeatureCache, unet, x, y, cells, probe_epochs: int) -> tuple[float, float]:
    """(seconds getting features, seconds in total) over all cells."""
    t_feat = t_all = 0.0
    for block, t in cells:
        t0 = time.perf_counter()
        f = cache.get(unet, "bench-random", x, "digits-train", block, t, 2, 0, also=[b for b, _ in cells])
        t1 = time.perf_counter()
        (fs,) = standardize(f)
        train_linear_probe(fs.flatten(1), y, 10, ProbeConfig(loss="ce", epochs=probe_epochs), seed=0)
        t_feat += t1 - t0
        t_all += time.perf_counter() - t0
    return t_feat, t_all


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timesteps", default="10,50,150,400")
    parser.add_argument("--probe-epochs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train, _ = load_image_splits(ImageDataConfig(name="digits"))
    x = to_model_space(train.images, 8, 1)
    torch.manual_seed(0)
    unet = build_unet(TINY).eval()
    cells = [(b, int(t)) for t in args.timesteps.split(",") for b in block_modules(unet)]
    with tempfile.TemporaryDirectory() as tmp:
        cache = FeatureCache(tmp)
        first_feat, first_all = sweep(cache, unet, x, train.labels, cells, args.probe_epochs)
        second_feat, second_all = sweep(cache, unet, x, train.labels, cells, args.probe_epochs)
    n_passes = len(args.timesteps.split(","))
    images_per_s = n_passes * len(x) / first_feat
    feat_ratio, all_ratio = first_feat / second_feat, first_all / second_all
    print(
        f"{len(cells)} cells ({n_passes} timesteps x {len(cells) // n_passes} blocks), "
        f"{len(x)} images, threads={args.threads}"
    )
    print(
        f"extraction: {images_per_s:.0f} images/s (one U-Net pass per image and timestep, all blocks hooked)"
    )
    print(
        f"features: extract {first_feat:.2f} s, cached {second_feat:.3f} s -> {feat_ratio:.1f}x "
        f"(target >= 10x) {'OK' if feat_ratio >= 10 else 'BELOW TARGET'}"
    )
    print(
        f"whole sweep incl. a {args.probe_epochs}-epoch probe per cell: "
        f"{first_all:.2f} s vs {second_all:.2f} s -> {all_ratio:.1f}x"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {"images_per_s": images_per_s, "feature_speedup": feat_ratio, "sweep_speedup": all_ratio},
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
