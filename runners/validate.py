"""Fail fast on a bad command line, before Hydra launches anything or torch is imported.

Hydra already rejects keys a schema lacks; this adds the valid keys to the message and runs each schema's
own checks (``__post_init__``: ranges, choices). For a sweep the first value of every swept key is checked
here; every job checks its own values again in the runner.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Sequence

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from runners.schemas import ROOT, register_all


class ConfigError(ValueError):
    """A config the runner refuses, with a message that names the key and the valid choices."""


def _first_of_sweeps(overrides: Sequence[str]) -> list[str]:
    """`method=erc,sac` → `method=erc`, so one composition stands for the whole sweep."""
    parsed = OverridesParser.create().parse_overrides(list(overrides))
    out = []
    for override, text in zip(parsed, overrides, strict=True):
        if override.is_sweep_override():
            first = next(iter(override.sweep_string_iterator()))
            out.append(f"{override.get_key_element()}={first}")
        else:
            out.append(text)
    return out


def _unknown_key(ex: BaseException) -> str | None:
    while ex is not None:
        if isinstance(ex, ConfigKeyError | ConfigAttributeError) and ex.full_key:
            return str(ex.full_key)
        ex = ex.__cause__ or ex.__context__
    return None


def _valid_keys_message(overrides: list[str], full_key: str) -> str:
    """Compose without the offending override and list the keys that do exist where it pointed."""
    clean = [o for o in overrides if o.lstrip("+~").split("=", 1)[0] != full_key]
    cfg = compose_config(clean)
    parent, _, leaf = full_key.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    while not isinstance(node, DictConfig) and parent:  # the parent is missing as well: step up
        parent, _, leaf = parent.rpartition(".")
        node = OmegaConf.select(cfg, parent) if parent else cfg
    where = f"'{parent}'" if parent else "the root config"
    keys = ", ".join(k for k in node if not str(k).startswith("_"))
    return f"Unknown config key '{full_key}': '{leaf}' is not a key of {where}. Valid keys: {keys}"


def compose_config(overrides: Sequence[str]) -> DictConfig:
    register_all()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def check_schemas(cfg: DictConfig) -> None:
    """Instantiate every typed node as its dataclass, which runs the schema's own range/choice checks."""
    try:
        OmegaConf.to_object(cfg)
    except ValueError as ex:
        raise ConfigError(str(ex)) from None
    except OmegaConfBaseException as ex:
        raise ConfigError(str(ex).splitlines()[0]) from None


def validate_overrides(argv: Sequence[str]) -> None:
    """Compose the command line's config (first value of each sweep) and raise ConfigError if it is bad."""
    overrides = [a for a in argv if not a.startswith("-") and ("=" in a or a.startswith("~"))]
    overrides = [o for o in overrides if not o.lstrip("+~").startswith(("hydra.", "hydra/"))]
    try:
        overrides = _first_of_sweeps(overrides)
        cfg = compose_config(overrides)
    except Exception as ex:
        key = _unknown_key(ex)
        message = str(ex)
        if key is not None:
            # If the rest of the command line is broken too, keep Hydra's own message.
            with contextlib.suppress(Exception):
                message = _valid_keys_message(overrides, key)
        raise ConfigError(message) from None
    check_schemas(cfg)


def check_overrides(argv: Sequence[str]) -> None:
    """CLI wrapper: print the problem and exit 2 instead of a traceback."""
    if any(a in ("--help", "-h", "--hydra-help", "--info") or a.startswith("--shell") for a in argv):
        return
    try:
        validate_overrides(argv)
    except ConfigError as ex:
        print(f"Config error: {ex}", file=sys.stderr)
        sys.exit(2)
