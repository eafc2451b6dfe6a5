"""One results record per run (``results.json``), written atomically at start, on failure and at the end."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from runners.atomic import write_json_atomic
from runners.schemas import ROOT

RESULTS_FILE = "results.json"
REMOVED = "<removed>"
# Secret-bearing keys, by name (lower-cased, "-" read as "_"): the whole key is one of SECRET_KEYS, or it
# ends with one of SECRET_SUFFIXES. Never a key that merely contains such a word: max_tokens,
# max_new_tokens, n_soft_tokens (counts of tokens) and api_key_env (the *name* of a variable) are settings
# the stored config needs to reproduce the run. Tokenizer special tokens (pad_token, ...) are not secrets.
SECRET_KEYS = frozenset(
    {
        "api_key", "apikey", "key", "secret", "password", "passwd", "token", "auth", "authorization",
        "credentials", "access_token", "auth_token", "bearer", "private_key", "secret_key", "access_key",
    }
)  # fmt: skip
SECRET_SUFFIXES = ("_api_key", "_apikey", "_secret", "_secret_key", "_access_key", "_password", "_token")
NOT_SECRET = frozenset({f"{t}_token" for t in ("pad", "bos", "eos", "unk", "sep", "cls", "mask")})
# Keys whose value names an environment variable (LLMClientConfig.api_key_env): its value is a secret.
_ENV_NAME_KEY = re.compile(r"(_env|(^|_)env_var)$", re.IGNORECASE)
_OC_ENV = re.compile(r"\$\{oc\.env:\s*([A-Za-z_][A-Za-z0-9_]*)")
# A secret this short is compared whole only: "contains" would scrub innocent values.
_MIN_CONTAINED = 8


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=5, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    dirty = subprocess.run(["git", "status", "--porcelain", "-uno"], cwd=ROOT, capture_output=True, text=True)
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def is_secret_key(key: Any) -> bool:
    """Whether a config key holds a credential, by the rule of SECRET_KEYS / SECRET_SUFFIXES above."""
    name = str(key).lower().replace("-", "_").lstrip("+~")
    if name in NOT_SECRET:
        return False
    return name in SECRET_KEYS or name.endswith(SECRET_SUFFIXES)


def _walk(obj: Any, path: tuple[str, ...] = ()) -> Any:
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _walk(v, (*path, str(k)))
    elif isinstance(obj, list | tuple):
        for v in obj:
            yield from _walk(v, path)
    else:
        yield path, obj


def secret_values(*configs: Any) -> set[str]:
    """Values of the environment variables a config names — the value of every ``*_env`` key
    (``api_key_env: OPENAI_API_KEY``) and every ``${oc.env:NAME}`` of an unresolved config — and of every
    variable whose own name is secret-bearing (HF_TOKEN, WANDB_API_KEY) when at least 8 characters long."""
    names: set[str] = set()
    for config in configs:
        for path, value in _walk(config):
            if not isinstance(value, str):
                continue
            if path and _ENV_NAME_KEY.search(path[-1]) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
                names.add(value)
            names.update(_OC_ENV.findall(value))
    named = {os.environ[n] for n in names if os.environ.get(n)}
    by_name = {v for n, v in os.environ.items() if is_secret_key(n) and len(v) >= _MIN_CONTAINED}
    return named | by_name


def _scrub_value(value: Any, secrets: set[str]) -> Any:
    if not isinstance(value, str) or not secrets:
        return value
    for secret in secrets:
        if value == secret or (len(secret) >= _MIN_CONTAINED and secret in value):
            return REMOVED
    return value


def scrub_secrets(obj: Any, secrets: set[str] | None = None) -> Any:
    """A copy of ``obj`` without credentials, at any depth: the value of every secret-bearing key
    (:func:`is_secret_key`), and every string equal to (or containing) a secret value — by default the
    values of the environment variables that ``obj`` names (:func:`secret_values`)."""
    secrets = secret_values(obj) if secrets is None else secrets
    if isinstance(obj, dict):
        return {k: (REMOVED if is_secret_key(k) else scrub_secrets(v, secrets)) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [scrub_secrets(v, secrets) for v in obj]
    return _scrub_value(obj, secrets)


def scrub_overrides(overrides: list[str], secrets: set[str]) -> list[str]:
    """Command-line overrides with secret values removed: ``method.grader.api_key=sk-...`` keeps its key."""
    out = []
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            out.append(_scrub_value(item, secrets))
            continue
        secret = is_secret_key(key.rsplit(".", 1)[-1])
        out.append(f"{key}={REMOVED if secret else _scrub_value(value, secrets)}")
    return out


def scrubbed_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as stored in results.json and sent to W&B, without credentials; the secrets
    include variables read through ``${oc.env:...}``, which only the unresolved config still names."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    return scrub_secrets(resolved, config_secrets(cfg))


def config_secrets(cfg: DictConfig) -> set[str]:
    """Every secret value :func:`scrubbed_config` removes from ``cfg`` (for scrubbing its overrides too)."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    return secret_values(resolved, OmegaConf.to_container(cfg, resolve=False))


def _group_name(cfg: DictConfig, group: str, key: str) -> str | None:
    node = cfg.get(group)
    return None if node is None else node.get(key)


def read_results(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def error_message(ex: BaseException) -> str:
    """The error's own message, without its traceback: what the report gives as the reason a run failed.
    Hydra's instantiation wrapper is unwrapped to the error it wraps (its text is that error's repr and a
    ``full_key:`` line, the last line of the traceback, which says nothing of what went wrong)."""
    from hydra.errors import InstantiationException

    while isinstance(ex, InstantiationException) and ex.__cause__ is not None:
        ex = ex.__cause__
    text = str(ex).strip()
    return f"{type(ex).__name__}: {text}" if text else type(ex).__name__


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def earlier_attempts(previous: dict[str, Any]) -> list[dict[str, Any]]:
    """The attempts of an earlier record, each closed. One still "running" had no final write (kill -9,
    out of memory, a lost node): it is marked "killed", ending at its last heartbeat (``updated_at``),
    with the wall time that heartbeat recorded. A record from before per-attempt times (``attempts`` a
    count) becomes one entry carrying that ``count``."""
    raw = previous.get("attempts")
    if isinstance(raw, list):
        attempts = [dict(a) for a in raw if isinstance(a, dict)]
    elif previous:
        attempts = [
            {
                "started_at": previous.get("started_at"),
                "ended_at": previous.get("finished_at"),
                "updated_at": previous.get("updated_at"),
                "wall_seconds": float(previous.get("wall_seconds") or 0.0),
                "status": previous.get("status"),
                "count": int(raw or 1),
            }
        ]
    else:
        attempts = []
    for attempt in attempts:
        if attempt.get("status") == "running":
            attempt["status"] = "killed"
            attempt["ended_at"] = attempt.get("updated_at") or attempt.get("started_at")
    return attempts


def attempt_count(record: dict[str, Any]) -> int:
    """How many times a run was started, for records old (``attempts`` a number) and new (a list)."""
    attempts = record.get("attempts")
    if isinstance(attempts, list):
        return sum(int(a.get("count", 1)) for a in attempts if isinstance(a, dict))
    return int(attempts or 0)


class ResultsSink:
    """Writes the run's record. Every attempt at the run is kept in ``attempts`` (start, end, wall time,
    status) and ``wall_seconds`` is their total. While running, a background heartbeat rewrites the record
    every ``heartbeat_s`` seconds, so an attempt killed without a final write still counts, up to its last
    heartbeat, when the next attempt reads the record."""

    heartbeat_s: float = 10.0

    def __init__(self, out_dir: Path, cfg: DictConfig, overrides: list[str] | None = None) -> None:
        self.path = out_dir / RESULTS_FILE
        previous = read_results(self.path) or {}
        self._earlier = earlier_attempts(previous)
        self._earlier_seconds = sum(float(a.get("wall_seconds") or 0.0) for a in self._earlier)
        self._t0 = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        now = _now()
        self._attempt: dict[str, Any] = {
            "started_at": now,
            "ended_at": None,
            "updated_at": now,
            "wall_seconds": 0.0,
            "status": "running",
        }
        secrets = config_secrets(cfg)
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
            "error_message": None,
            "attempts": [*self._earlier, self._attempt],
            "started_at": previous.get("started_at") or now,
            "updated_at": now,
            "finished_at": None,
            "wall_seconds": round(self._earlier_seconds, 3),
            "git_commit": git_commit(),
            "output_dir": str(out_dir),
            "overrides": scrub_overrides(list(overrides or []), secrets),
            "config": scrub_secrets(OmegaConf.to_container(cfg, resolve=True), secrets),
        }

    def completed(self) -> bool:
        previous = read_results(self.path)
        return bool(previous) and previous.get("status") == "completed"

    def write(self, status: str, metrics: dict[str, float] | None = None, **extra: Any) -> None:
        """Write the record with ``status``; "running" starts the heartbeat, any other status ends the
        attempt (and the heartbeat)."""
        with self._lock:
            self.record.update(extra)
            if metrics is not None:
                self.record["metrics"] = {k: float(v) for k, v in metrics.items()}
            self._write_locked(status)
        if status == "running" and self._beat is None and self.heartbeat_s > 0:
            self._beat = threading.Thread(target=self._beat_loop, name="results-heartbeat", daemon=True)
            self._beat.start()
        elif status != "running":
            self._stop.set()

    def heartbeat(self) -> None:
        """Refresh a running record's ``updated_at`` and wall time (the heartbeat thread calls this; a
        runner may too). Does nothing once the attempt has ended."""
        with self._lock:
            if self.record["status"] == "running" and not self._stop.is_set():
                self._write_locked("running")

    def _beat_loop(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            with contextlib.suppress(OSError):  # a full disk must not kill the run; the final write says so
                self.heartbeat()

    def _write_locked(self, status: str) -> None:
        now = _now()
        elapsed = round(time.monotonic() - self._t0, 3)
        self.record["status"] = status
        self._attempt.update(status=status, updated_at=now, wall_seconds=elapsed)
        if status != "running":
            self._attempt["ended_at"] = now
            self.record["finished_at"] = now
        self.record["updated_at"] = now
        self.record["wall_seconds"] = round(self._earlier_seconds + elapsed, 3)
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
