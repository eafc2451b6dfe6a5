"""MerA stage 1: the pretrained source adapters, in AdapterHub format, each tagged with its track.

Offline, one SeqBn adapter per source task is trained on the frozen encoder, source i from init seed
``source_seed + i`` (so the adapters start from different random initialisations, which is when
alignment matters). They are the "published adapters" of this small world: trained once and cached,
keyed by (encoder, task, init seed, reduction, training budget), so every run of a sweep shares them.
Writes are atomic (temp dir + rename) under a file lock, so parallel jobs train each adapter once.
Online users list published AdapterHub adapters by name instead (``method.published``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from data.text_tasks import make_task
from methods.mera.config import MerAConfig, TextEncoderConfig, published_task
from methods.mera.model import Classifier, accuracy, adapter_config, load_encoder, tokenize, train

log = logging.getLogger("reprolab")


@dataclass
class SourceAdapter:
    """Where a source adapter lives (a folder in AdapterHub format, or a hub id), its track tag and the
    task it was trained on (None: unknown)."""

    name: str
    track: str
    location: str
    accuracy: float | None = None
    task: str | None = None


def adapter_name(task: str) -> str:
    """AdapterHub names may not contain '/' or '.' (they become module names)."""
    return task.replace("/", "__").replace(".", "_")


def cache_key(enc: TextEncoderConfig, cfg: MerAConfig, task: str, init_seed: int) -> str:
    budget = [cfg.source_train, cfg.source_steps, cfg.source_batch, cfg.source_lr, cfg.max_length]
    # v2: source_accuracy is stored as a fraction (v1 stored percent)
    blob = json.dumps([enc.name, enc.pooling, task, init_seed, cfg.reduction_factor, budget, "v2"])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def default_cache_dir() -> Path:
    from data.cache import cache_dir

    return cache_dir("mera") / "sources"


def train_source(
    enc_cfg: TextEncoderConfig,
    cfg: MerAConfig,
    task: str,
    init_seed: int,
    out: Path,
    device: torch.device | None = None,
) -> float:
    """Train one source adapter (fresh head, discarded) on ``device`` (the runner's, ctx.device; the
    default device when None) and save it in AdapterHub format into ``out``."""
    data = make_task(task, cfg.source_train + cfg.source_eval, seed=10_000 + init_seed)
    train_idx = list(range(cfg.source_train))
    test_idx = list(range(cfg.source_train, len(data)))
    encoder, tokenizer = load_encoder(enc_cfg)
    name = adapter_name(task)
    torch.manual_seed(init_seed)  # the adapter's random initialisation
    encoder.add_adapter(name, config=adapter_config(cfg.reduction_factor))
    encoder.train_adapter(name)
    model = Classifier(encoder, data.num_classes, enc_cfg.pooling)
    if device is not None:
        model.to(device)
    tr, te = data.subset(train_idx), data.subset(test_idx)
    train(
        model,
        model.parameters(),
        tokenize(tokenizer, tr, cfg.max_length),
        tr.labels,
        cfg.source_steps,
        cfg.source_batch,
        cfg.source_lr,
        seed=init_seed,
    )
    acc = accuracy(model, tokenize(tokenizer, te, cfg.max_length), te.labels, cfg.eval_batch)
    meta = {"task": task, "track": data.track, "init_seed": init_seed, "source_accuracy": acc}
    encoder.save_adapter(str(out), name, meta_dict=meta)
    return acc


def published_location(cfg: MerAConfig, adapter_id: str) -> str:
    """What ``load_adapter`` gets for a published adapter: its hub id, or (method.adapter_dir set) the
    folder ``<adapter_dir>/<id>`` holding it in AdapterHub's format, so the same call loads either."""
    if cfg.adapter_dir is None:
        return adapter_id
    folder = Path(cfg.adapter_dir).expanduser() / adapter_id
    if not (folder / "adapter_config.json").is_file():
        raise FileNotFoundError(
            f"method.adapter_dir={cfg.adapter_dir}: no adapter in AdapterHub's format for {adapter_id!r} "
            f"(expected {folder}/adapter_config.json, as save_adapter writes it)"
        )
    return str(folder)


def ensure_sources(
    enc_cfg: TextEncoderConfig,
    cfg: MerAConfig,
    root: Path | None = None,
    on_done: Any = None,
    device: torch.device | None = None,
) -> list[SourceAdapter]:
    """Every source adapter, trained now only if no earlier run cached it."""
    from filelock import FileLock

    if cfg.published:  # AdapterHub adapters by name (or each from its folder under adapter_dir)
        return [
            SourceAdapter(
                adapter_name(p.id),
                p.track,
                published_location(cfg, p.id),
                task=p.task or published_task(p.id),
            )
            for p in cfg.published
        ]
    root = Path(root or cfg.cache_dir or default_cache_dir())
    out = []
    for i, task in enumerate(cfg.sources):
        init_seed = cfg.source_seed + i
        folder = root / f"{adapter_name(task)}-{cache_key(enc_cfg, cfg, task, init_seed)}"
        folder.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(folder) + ".lock"):
            if not (folder / "adapter_config.json").exists():
                log.info("training source adapter %s (init seed %d) into %s", task, init_seed, folder)
                tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
                try:
                    train_source(enc_cfg, cfg, task, init_seed, tmp, device)
                    os.replace(tmp, folder)
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
        meta = json.loads((folder / "adapter_config.json").read_text())
        out.append(
            SourceAdapter(adapter_name(task), meta["track"], str(folder), meta["source_accuracy"], task)
        )
        if on_done is not None:
            on_done(task)
    return out
