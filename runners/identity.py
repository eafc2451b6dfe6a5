"""The config identity of a resumable artefact: which settings it was made from.

A checkpoint (loop ``checkpoint.pt``, fit ``last.ckpt``), a pipeline stage's summary and a completed
``results.json`` each carry the identity of the config that made them. Resuming in a run dir whose
artefacts were made with other settings would silently reuse the old work, so the runner refuses, names
the keys that differ and the two ways out.

The identity is the resolved config flattened to dotted keys (``method.arm``, ``model.name``, ...) minus
:data:`NON_RESULT_KEYS`, plus a short hash of it. A pipeline stage's identity covers only the config
keys the stage declares it reads (``Stage.reads``); one that declares nothing covers the whole config.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from runners.validate import ConfigError

# Keys that cannot change a result, the one list of them. Each entry drops the key and everything under it.
# - logger, launcher, hydra: where metrics go and how jobs are launched;
# - rerun: whether to start over, not what to compute;
# - hardware.num_threads: torch's intra-op thread count (a speed knob; CPU kernels stay deterministic);
# - checkpoint_every: when resumable state is saved; resume is exact (runners.checkpoint), so it does
#   not change what the run computes;
# - report, scale.description: the experiment's table layout and the paper's numbers, and a label.
NON_RESULT_KEYS: tuple[str, ...] = (
    "logger",
    "launcher",
    "hydra",
    "rerun",
    "hardware.num_threads",
    "checkpoint_every",
    "report",
    "scale.description",
)

ABSENT = "<absent>"


def _under(key: str, prefix: str) -> bool:
    return key == prefix or key.startswith(prefix + ".")


def _flatten(node: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(node, Mapping) and node:
        for k, v in node.items():
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), out)
    else:
        out[prefix] = node


def config_values(cfg: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    """The resolved config as ``{dotted key: value}``, without the keys that cannot change a result."""
    container = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    flat: dict[str, Any] = {}
    _flatten(container, "", flat)
    # JSON round trip: the stored and the current identity compare as the same plain types.
    flat = json.loads(json.dumps(flat, default=str))
    return {k: v for k, v in flat.items() if not any(_under(k, p) for p in NON_RESULT_KEYS)}


def make_identity(values: dict[str, Any]) -> dict[str, Any]:
    blob = json.dumps(values, sort_keys=True, default=str).encode()
    return {"hash": hashlib.sha256(blob).hexdigest()[:16], "values": values}


def config_identity(
    cfg: DictConfig | Mapping[str, Any], reads: Iterable[str] | None = None
) -> dict[str, Any]:
    """The identity of ``cfg``; with ``reads`` (dotted prefixes) only of the keys under them."""
    values = config_values(cfg)
    if reads is not None:
        prefixes = tuple(reads)
        values = {k: v for k, v in values.items() if any(_under(k, p) for p in prefixes)}
    return make_identity(values)


def differences(stored: dict[str, Any], current: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(key, old value, new value) for every key whose value differs, in key order."""
    old, new = stored.get("values", {}), current.get("values", {})
    keys = sorted(set(old) | set(new))
    return [
        (k, old.get(k, ABSENT), new.get(k, ABSENT)) for k in keys if old.get(k, ABSENT) != new.get(k, ABSENT)
    ]


class ResumeRefused(ConfigError):
    """A run dir holds work made with other settings (or by another run): the runner will not reuse it."""


def refusal(artefact: str, stored: dict[str, Any] | None, current: dict[str, Any]) -> ResumeRefused:
    """The error for resuming ``artefact`` (a path) with ``current`` settings; it names what differs."""
    if stored is None:
        why = "carries no config identity (it was made before identities were recorded)"
        listed = ""
    else:
        diffs = differences(stored, current)
        shown = "\n".join(
            f"  {k}: {json.dumps(a, default=str)} → {json.dumps(b, default=str)}" for k, a, b in diffs[:20]
        )
        more = f"\n  ... and {len(diffs) - 20} more" if len(diffs) > 20 else ""
        why = f"was made with other settings ({len(diffs)} key(s) differ, old → new):"
        listed = f"\n{shown}{more}"
    return ResumeRefused(
        f"{artefact} {why}{listed}\n"
        "Resuming would reuse work made with the old settings. Either start this run dir over with "
        "rerun=true, or run into another dir (hydra.run.dir=<new dir>)."
    )


def check_identity(artefact: str, stored: dict[str, Any] | None, current: dict[str, Any]) -> None:
    """Raise :class:`ResumeRefused` unless ``stored`` is the identity ``current``."""
    if stored is None or stored.get("hash") != current["hash"] or differences(stored, current):
        raise refusal(artefact, stored, current)
