"""One results record per run (``results.json``), written atomically at start, on failure and at the end."""

from __future__ import annotations

import json
import re
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from runners.atomic import write_json_atomic
from runners.schemas import ROOT

RESULTS_FILE = "results.json"
_SECRET = re.compile(r"(api[_-]?key|token|secret|password)", re.IGNORECASE)


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=5, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    dirty = subprocess.run(["git", "status", "--porcelain", "-uno"], cwd=ROOT, capture_output=True, text=True)
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def scrub_secrets(obj: Any) -> Any:
    """Drop values whose key looks like a credential, at any depth."""
    if isinstance(obj, dict):
        return {k: ("<removed>" if _SECRET.search(str(k)) else scrub_secrets(v)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [scrub_secrets(v) for v in obj]
    return obj


def _group_name(cfg: DictConfig, group: str, key: str) -> str | None:
    node = cfg.get(group)
    return None if node is None else node.get(key)


def read_results(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


class ResultsSink:
    """Writes the run's record. A resumed run keeps adding to the wall time of its earlier attempts."""

    def __init__(self, out_dir: Path, cfg: DictConfig, overrides: list[str] | None = None) -> None:
        self.path = out_dir / RESULTS_FILE
        previous = read_results(self.path) or {}
        self._earlier_seconds = float(previous.get("wall_seconds") or 0.0)
        self._t0 = time.monotonic()
        self.record: dict[str, Any] = {
            "method": cfg.method.name,
            "env": _group_name(cfg, "env", "task"),
            "data": _group_name(cfg, "data", "name"),
            "model": _group_name(cfg, "model", "name"),
            "scale": cfg.scale.name,
            "seed": int(cfg.seed),
            "status": "running",
            "metrics": {},
            "curves": {},
            "error": None,
            "attempts": int(previous.get("attempts", 0)) + 1,
            "started_at": previous.get("started_at") or datetime.now(UTC).isoformat(timespec="seconds"),
            "finished_at": None,
            "wall_seconds": self._earlier_seconds,
            "git_commit": git_commit(),
            "output_dir": str(out_dir),
            "overrides": list(overrides or []),
            "config": scrub_secrets(OmegaConf.to_container(cfg, resolve=True)),
        }

    def completed(self) -> bool:
        previous = read_results(self.path)
        return bool(previous) and previous.get("status") == "completed"

    def write(self, status: str, metrics: dict[str, float] | None = None, **extra: Any) -> None:
        self.record.update(extra)
        self.record["status"] = status
        if metrics is not None:
            self.record["metrics"] = {k: float(v) for k, v in metrics.items()}
        self.record["wall_seconds"] = round(self._earlier_seconds + time.monotonic() - self._t0, 3)
        if status != "running":
            self.record["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        write_json_atomic(self.path, self.record)


def merge_metrics(run_dir: Path, metrics: dict[str, float], replace_prefix: str | None = None) -> None:
    """Add metrics computed after the run (a post-hoc judge) to its record, atomically; earlier metrics
    starting with ``replace_prefix`` (an earlier judging) are dropped first."""
    path = Path(run_dir) / RESULTS_FILE
    record = read_results(path)
    if record is None:
        raise FileNotFoundError(f"{path}: no readable results record to add metrics to")
    kept = {
        k: v
        for k, v in record.get("metrics", {}).items()
        if not (replace_prefix and k.startswith(replace_prefix))
    }
    record["metrics"] = {**kept, **{k: float(v) for k, v in metrics.items()}}
    write_json_atomic(path, record)
