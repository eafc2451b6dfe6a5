"""Where every on-disk cache lives: one root, ``$REPROLAB_CACHE`` or ``<repo>/.cache``.

All caches (converted LLM weights, trained DDPM checkpoints and their features, MerA source adapters,
LLM response databases, torchvision downloads) go through :func:`cache_dir`, so one variable moves them
all and a run launched from another directory (Hydra changes none, but a user may ``cd``) finds the same
files instead of training or downloading again into a relative ``.cache`` of its launch directory.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENV_VAR = "REPROLAB_CACHE"


def cache_root() -> Path:
    """The root of all caches: ``$REPROLAB_CACHE`` (``~`` expanded, made absolute) or ``<repo>/.cache``."""
    value = os.environ.get(ENV_VAR)
    return Path(value).expanduser().resolve() if value else ROOT / ".cache"


def cache_dir(name: str | None = None) -> Path:
    """The cache folder of one consumer (``cache_dir("diffusion_cls")``), or the root with no name.

    Not created here: a consumer that only reads (a cache-hit check) should not leave empty folders.
    """
    return cache_root() / name if name else cache_root()
