"""One quick check, before anything is loaded, that every Hugging Face hub name in a config can be had.

Offline, ``from_pretrained`` / ``load_dataset`` on a hub name spend ~40 s in retries and tracebacks before
failing. A name is fine when it is a local path, when it is already in the local Hugging Face cache, or
when the hub answers a HEAD request within ~2 s (``HF_HUB_OFFLINE=1`` means unreachable, without asking).
Otherwise ``check_hub_sources`` raises one ConfigError naming the key, the name, why, and the offline
choices. Stdlib and ``huggingface_hub.constants`` only: no torch, transformers or datasets on this path.
"""

from __future__ import annotations

import functools
import os
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TIMEOUT_S = 2.0
_TRUE = ("1", "true", "yes", "on")
# Where an instruction-data key takes something else than a hub name (data.config.InstructionSelectionConfig).
_DATA_KEYWORDS = ("generated",)


def _env_true(*names: str) -> bool:
    return any(os.environ.get(n, "").strip().lower() in _TRUE for n in names)


def _looks_local(name: str) -> bool:
    """A path rather than a hub id (``org/name`` or ``name``): absolute, relative, home or existing."""
    return name.startswith((".", "/", "~")) or Path(name).expanduser().exists()


def _hf_home() -> Path:
    from huggingface_hub import constants

    return Path(os.environ["HF_HOME"]) if os.environ.get("HF_HOME") else Path(constants.HF_HOME)


def _hub_cache() -> Path:
    """Read from the environment on each call (huggingface_hub.constants freezes it at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    return _hf_home() / "hub"


def _datasets_cache() -> Path:
    if os.environ.get("HF_DATASETS_CACHE"):
        return Path(os.environ["HF_DATASETS_CACHE"])
    return _hf_home() / "datasets"


def in_local_cache(name: str, kind: str = "model") -> bool:
    """Whether a snapshot of ``name`` is in the local HF hub cache (or, for a dataset, ``datasets``'s own
    cache), so loaders can work offline. Only looks at folders: instant, no network."""
    folder = _hub_cache() / f"{kind}s--{name.replace('/', '--')}" / "snapshots"
    if folder.is_dir() and any(folder.iterdir()):
        return True
    if kind == "dataset":
        prepared = _datasets_cache() / name.replace("/", "___")
        return prepared.is_dir() and any(prepared.iterdir())
    return False


def hub_unreachable(kind: str = "model") -> str | None:
    """Why the hub cannot be reached (None when it answers): an offline variable, else one HEAD."""
    from huggingface_hub import constants

    offline = ["HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE" if kind == "model" else "HF_DATASETS_OFFLINE"]
    if _env_true(*offline):
        return f"{' or '.join(offline)} is set"
    return _head(os.environ.get("HF_ENDPOINT") or constants.ENDPOINT)


@functools.cache
def _head(endpoint: str) -> str | None:
    """Asked once per process and endpoint. In a thread with a deadline: urllib's timeout does not cover
    a DNS lookup that hangs."""
    answer: list[str | None] = []

    def ask() -> None:
        try:
            urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=TIMEOUT_S).close()
            answer.append(None)
        except urllib.error.HTTPError:
            answer.append(None)  # it answered, even if not with 200
        except (OSError, ValueError) as ex:
            reason = getattr(ex, "reason", ex)
            answer.append(f"{type(reason).__name__}: {reason}")

    thread = threading.Thread(target=ask, daemon=True)
    thread.start()
    thread.join(TIMEOUT_S + 0.5)
    if answer and answer[0] is None:
        return None
    return f"{endpoint} could not be reached within {TIMEOUT_S:.0f} s ({answer[0] if answer else 'no reply'})"


def hub_name_problem(name: str, kind: str = "model") -> str | None:
    """Why ``name`` cannot be loaded here, or None when it can (local path, cached, or hub reachable)."""
    if _looks_local(name) or in_local_cache(name, kind):
        return None
    why = hub_unreachable(kind)
    if why is None:
        return None
    return f"the hub is unreachable ({why}) and the {kind} is not in the local cache ({_hub_cache()})"


def hub_names(cfg: Any) -> Iterator[tuple[str, str, str, str]]:
    """(key, name, kind, offline choices) of every hub name a composed config will load.

    - a node with ``source: hub`` and a ``name`` (causal LMs, text encoders): a model;
    - an image set with ``source: hub`` (a ``hub_id`` key): its ``hub_id``, a dataset;
    - a node with ``backend: local`` and a ``model`` that is not an offline name (graders, judges);
    - ``method.data`` unless ``generated`` or a local path (records.is_local_source): a dataset.
    """
    from omegaconf import DictConfig, OmegaConf

    from data.instructions.records import is_local_source  # the loader's own rule: path or hub id
    from data.llm.loader import OFFLINE_MODELS

    container = OmegaConf.to_container(cfg, resolve=False) if isinstance(cfg, DictConfig) else cfg

    def walk(node: Any, key: str) -> Iterator[tuple[str, str, str, str]]:
        if not isinstance(node, dict):
            return
        name = node.get("name")
        if isinstance(name, str) and "${" in name and isinstance(cfg, DictConfig):  # e.g. ${method.backbone}
            name = OmegaConf.select(cfg, f"{key}.name" if key else "name", throw_on_resolution_failure=False)
        if "hub_id" in node:  # an image set (data.config.ImageDataConfig): its hub_id is a dataset
            hub_id = node.get("hub_id")
            if node.get("source") == "hub" and isinstance(hub_id, str):
                choices = f"an offline {key} (data=digits, data=mnist5k), or a local folder as {key}.hub_id"
                yield f"{key}.hub_id", hub_id, "dataset", choices
        elif node.get("source") == "hub" and isinstance(name, str) and name != "???":
            if key == "model":
                choices = ", ".join(f"model={k} ({v})" for k, v in OFFLINE_MODELS.items())
            else:
                choices = f"the offline source of {key}.source (see its config)"
            yield f"{key}.name", name, "model", f"{choices}, or a local model folder as {key}.name"
        model = node.get("model")
        if node.get("backend") == "local" and isinstance(model, str) and model not in OFFLINE_MODELS:
            choices = ", ".join(f"{key}.model={k} ({v})" for k, v in OFFLINE_MODELS.items())
            yield f"{key}.model", model, "model", f"{choices}, or a local model folder"
        for child, value in node.items():
            if child != "hydra":
                yield from walk(value, f"{key}.{child}" if key else str(child))

    yield from walk(container, "")
    if isinstance(cfg, DictConfig) and OmegaConf.select(cfg, "method.task_source") == "glue":  # MerA
        glue = OmegaConf.select(cfg, "method.glue", throw_on_resolution_failure=False)
        if isinstance(glue, str) and not _looks_local(glue):
            yield "method.glue", glue, "dataset", "a local folder in the hub's layout as method.glue"
        if OmegaConf.select(cfg, "method.adapter_dir") is None:
            for i in range(len(OmegaConf.select(cfg, "method.published") or [])):
                key = f"method.published.{i}.id"
                adapter_id = OmegaConf.select(cfg, key, throw_on_resolution_failure=False)
                choices = "method.adapter_dir=<a folder holding each id's adapter as save_adapter writes it>"
                yield f"method.published[{i}].id", str(adapter_id), "model", choices
    data = (container.get("method") or {}).get("data") if isinstance(container, dict) else None
    if isinstance(data, str) and data not in _DATA_KEYWORDS and not is_local_source(data):
        choices = "method.data=generated (instruction tasks the code generates), or a local .json/.jsonl file"
        yield "method.data", data, "dataset", choices


def check_hub_sources(cfg: Any) -> None:
    """Raise runners.validate.ConfigError for the first hub name that cannot be had here, in well under
    3 s (one HEAD request at most), so an offline run fails before any loading starts."""
    from runners.validate import ConfigError

    for key, name, kind, choices in hub_names(cfg):
        problem = hub_name_problem(name, kind)
        if problem is not None:
            message = f"{key}={name!r} is a Hugging Face hub {kind}, but {problem}. Offline: {choices}."
            raise ConfigError(message)


def _local_fingerprint(folder: Path) -> str:
    """A digest of a local dataset folder: its resolved path and every file's name, size and mtime."""
    import hashlib

    digest = hashlib.sha1(str(folder.resolve()).encode())
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        stat = path.stat()
        digest.update(f"{path.relative_to(folder)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def load_dataset_source(source: str, *args: Any, **kwargs: Any) -> Any:
    """``datasets.load_dataset(source, ...)`` for a hub id or a local folder in the hub's layout.

    `datasets` keys the cache of a local folder by the folder's *name*, so two folders both called
    ``cifar10`` (two copies, or an edited one) would be served the first one's rows. A local folder
    therefore gets its own cache, named by its path and its files' sizes and times.
    """
    from datasets import load_dataset

    from data.cache import cache_dir

    local = Path(source).expanduser()
    if local.exists():  # a local path, `~` expanded; anything else is a hub id
        source = str(local)
    if local.is_dir() and "cache_dir" not in kwargs:
        name = f"{local.name}-{_local_fingerprint(local)}"
        kwargs["cache_dir"] = str(cache_dir("datasets") / name)
    return load_dataset(source, *args, **kwargs)
