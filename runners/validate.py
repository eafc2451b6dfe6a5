"""Fail fast on a bad command line, before Hydra launches anything or torch is imported.

Hydra already rejects keys a schema lacks; this adds the valid keys to the message, turns Hydra's
"Error merging override" into the key, the expected type and the value given, and runs each schema's
own checks (``__post_init__``: ranges, choices). For a sweep the first value of every swept key is checked
here; every job checks its own values again in the runner. On the command line (:func:`check_overrides`)
it also checks what the machine must provide: local data files (exist, readable, a known suffix, parse),
hub names reachable or cached (``data.hub``) and a GPU when the hardware asks for one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    OmegaConfBaseException,
    ValidationError,
)

from runners.schemas import ROOT, register_all

# Groups a user never picks: budget/<method>/<scale> follows from method and scale.
INTERNAL_GROUPS = ("budget",)
# Data files above this size are only checked for existence and suffix at compose time, not parsed.
PARSE_LIMIT_BYTES = 64 * 2**20


class ConfigError(ValueError):
    """A config the runner refuses, with a message that names the key and the valid choices."""


def split_argv(argv: Sequence[str]) -> tuple[list[str], bool]:
    """The overrides of a command line as Hydra's own parser sees them, and whether ``-m`` is given.

    Hydra's flags that take a value (``--cfg job``, ``-cn name``, ...) are parsed by Hydra's parser, so
    their values are never mistaken for overrides."""
    from hydra._internal.utils import get_args_parser

    args, rest = get_args_parser().parse_known_args(list(argv))
    return [*args.overrides, *(r for r in rest if not r.startswith("-"))], bool(args.multirun)


def _first_of_sweeps(overrides: Sequence[str]) -> list[str]:
    """`method=erc,sac` → `method=erc`, so one composition stands for the whole sweep."""
    parsed = OverridesParser.create().parse_overrides(list(overrides))
    out = []
    for override, text in zip(parsed, overrides, strict=True):
        if override.is_sweep_override():
            first = next(iter(override.sweep_string_iterator()), None)
            if first is None:
                value = text.split("=", 1)[1]
                raise ConfigError(
                    f"the sweep {override.get_key_element()}={value} is empty: it gives no value to run "
                    f"(a sweep needs at least one value, e.g. {override.get_key_element()}=0,1,2 or "
                    f"{override.get_key_element()}='range(0,3)')"
                )
            out.append(f"{override.get_key_element()}={first}")
        else:
            out.append(text)
    return out


def _unknown_key(ex: BaseException | None) -> str | None:
    while ex is not None:
        if isinstance(ex, ConfigKeyError | ConfigAttributeError) and ex.full_key:
            return str(ex.full_key)
        ex = ex.__cause__ or ex.__context__
    return None


# Words of OmegaConf's conversion errors → what a good value looks like.
_EXPECTED = (
    ("to Integer", "an integer (int)"),
    ("to Float", "a number (float)"),
    ("valid bool", "a boolean (true or false)"),
    ("to string", "a string"),
)


def _type_error_message(ex: BaseException | None) -> str | None:
    """``seed=abc`` → "seed: expected an integer (int), got 'abc' (str), in override seed=abc"."""
    override = None
    while ex is not None:
        text = str(ex)
        if text.startswith("Error merging override "):
            override = text.removeprefix("Error merging override ").strip()
        if isinstance(ex, ValidationError) and ex.full_key:
            first = text.splitlines()[0]
            expected = next((good for words, good in _EXPECTED if words in first), None)
            value = getattr(ex, "value", None)
            where = f", in override {override}" if override else ""
            if expected is None:
                return f"{ex.full_key}: {first}{where}"
            return f"{ex.full_key}: expected {expected}, got {value!r} ({type(value).__name__}){where}"
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


def _hydra_message(ex: BaseException) -> str:
    """Hydra's own message on one line, without its search-path listing (which only repeats where conf/
    is): "Could not find 'env/nope'. Available options in 'env': dmc"."""
    text = str(ex).split("Config search path:")[0].strip()
    text = re.sub(r":\n\t", ": ", text)
    text = re.sub(r"\n\t", ", ", text)
    return re.sub(r"\s*\n+\s*", ". ", text)


def compose_config(overrides: Sequence[str]) -> DictConfig:
    register_all()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def _check_no_extra_keys(node: DictConfig, path: str = "") -> None:
    """Refuse keys a typed node's dataclass lacks: Hydra lets ``+method.extra=1`` in (``+`` opens the
    node), and the dataclass would only fail later, with a TypeError, when the method is built."""
    kind = OmegaConf.get_type(node)
    if kind is not None and dataclasses.is_dataclass(kind):
        fields = [f.name for f in dataclasses.fields(kind)]
        for key in node:
            if key not in fields:
                where = f"'{path.rstrip('.')}'" if path else "the root config"
                valid = ", ".join(f for f in fields if not f.startswith("_"))
                raise ConfigError(
                    f"Unknown config key '{path}{key}': '{key}' is not a key of {where} "
                    f"({kind.__name__}). Valid keys: {valid}"
                )
    for key in node:
        child = node._get_node(key)
        if isinstance(child, DictConfig) and not child._is_missing() and not child._is_none():
            _check_no_extra_keys(child, f"{path}{key}.")


def check_schemas(cfg: DictConfig) -> None:
    """Instantiate every typed node as its dataclass, which runs the schema's own range/choice checks."""
    _check_no_extra_keys(cfg)
    try:
        OmegaConf.to_object(cfg)
    except ValueError as ex:
        raise ConfigError(str(ex)) from None
    except OmegaConfBaseException as ex:
        raise ConfigError(str(ex).splitlines()[0]) from None
    from runners.distributed import strategy_refusal, tuning_batch_refusal  # issue 16

    if (refusal := strategy_refusal(cfg)) is not None:  # the method cannot use the strategy at all
        raise ConfigError(refusal)
    hardware = cfg.get("hardware")
    fsdp = isinstance(hardware, DictConfig) and str(hardware.get("strategy", "")).startswith("fsdp")
    if fsdp and hardware.get("accelerator") in ("cpu", "mps"):  # Lightning's FSDPStrategy: CUDA only
        raise ConfigError(
            f"hardware.strategy={hardware.strategy} needs CUDA GPUs (Lightning's FSDP runs on CUDA "
            f"only), not hardware.accelerator={hardware.accelerator}; on CPUs use "
            "hardware=ddp hardware.accelerator=cpu"
        )
    if (refusal := tuning_batch_refusal(cfg)) is not None:
        raise ConfigError(refusal)


def _not_an_override(text: str) -> ConfigError:
    """``method.beta`` alone: say how to set, add or delete it (Hydra says only 'Error parsing')."""
    current = ""
    with contextlib.suppress(Exception):
        value = OmegaConf.select(compose_config([]), text.lstrip("+"), default="<absent>")
        if value != "<absent>":
            current = f" ({text} is {value!r} by default)"
    return ConfigError(
        f"'{text}' is not an override: write {text}=<value> to set it{current}, +{text}=<value> to add "
        f"a new key, or ~{text} to delete one"
    )


def _experiment_sweep_firsts(overrides: list[str]) -> list[str]:
    """The first value of each key an experiment's own ``hydra.sweeper.params`` sweeps and the command line
    leaves alone (``data: ${report.sweep.data}`` → ``data=cifar10`` at scale=paper), so that the checks see
    what the first job will need (its GPU, its hub names) rather than the defaults it replaces."""
    register_all()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        full = compose(config_name="config", overrides=list(overrides), return_hydra_config=True)
    params = OmegaConf.select(full, "hydra.sweeper.params")
    if not params:
        return []
    try:
        resolved = OmegaConf.to_container(params, resolve=True)
    except OmegaConfBaseException:  # e.g. a ${hydra:...} resolver, only known inside a run: check the rest
        return []
    given = {o.lstrip("+~").split("=", 1)[0] for o in overrides}
    return _first_of_sweeps([f"{key}={value}" for key, value in resolved.items() if key not in given])


def validate_overrides(argv: Sequence[str], check_machine: bool = False) -> DictConfig:
    """Compose the command line's config (first value of each sweep) and raise ConfigError if it is bad.

    ``check_machine`` also checks what this machine must provide (data files, hub names, a GPU); the CLI
    turns it on, tests of a config alone leave it off. Returns the composed config."""
    overrides, multirun = split_argv(argv)
    for o in overrides:
        if "=" not in o and not o.startswith("~"):
            raise _not_an_override(o)
    overrides = [o for o in overrides if not o.lstrip("+~").startswith(("hydra.", "hydra/"))]
    try:
        overrides = _first_of_sweeps(overrides)
        if multirun:  # the first job's values of what the experiment sweeps (data, hardware at scale=paper)
            overrides = [*_experiment_sweep_firsts(overrides), *overrides]
        cfg = compose_config(overrides)
    except ConfigError:
        raise
    except Exception as ex:
        key = _unknown_key(ex)
        message = _type_error_message(ex) or _hydra_message(ex)
        if key is not None:
            # If the rest of the command line is broken too, keep Hydra's own message.
            with contextlib.suppress(Exception):
                message = _valid_keys_message(overrides, key)
        raise ConfigError(message) from None
    check_schemas(cfg)
    from runners.distributed import cluster_tasks_refusal, worker_launcher_refusal

    refusal = cluster_tasks_refusal(cfg, overrides) or worker_launcher_refusal(cfg, overrides)
    if refusal is not None:
        raise ConfigError(refusal)
    if check_machine:
        check_data_files(cfg)
        check_hub_names(cfg)
        check_gpu(cfg, overrides)
    return cfg


# --- what the machine must provide ---------------------------------------------------------------------


def check_data_files(cfg: DictConfig) -> None:
    """A local ``method.data`` file must exist, be readable, end in .json/.jsonl and parse into records
    (the first ``method.n_train`` of them), so a bad file fails in a second, not after the imports."""
    method = cfg.get("method")
    source = method.get("data") if isinstance(method, DictConfig) else None
    if not isinstance(source, str) or source == "generated":
        return
    from data.instructions import records

    if not records.is_local_source(source):
        return
    try:
        path = records.check_local_file(source)
        if path.stat().st_size <= PARSE_LIMIT_BYTES:
            records.load_records(source, limit=method.get("n_train"))
    except (OSError, ValueError) as ex:
        raise ConfigError(f"method.data={source}: {ex}") from None


def check_hub_names(cfg: DictConfig) -> None:
    """Every hub name must be reachable or cached (data.hub: one quick check, no loading)."""
    try:
        from data.hub import check_hub_sources
    except ImportError:  # the module is optional: without it, loaders fail on their own
        return
    check_hub_sources(cfg)


def gpu_probe() -> bool:
    """Whether this machine has an NVIDIA GPU, without importing torch (~1 s): its kernel driver's
    /proc entry, or nvidia-smi on PATH."""
    return Path("/proc/driver/nvidia").exists() or shutil.which("nvidia-smi") is not None


def check_gpu(cfg: DictConfig, overrides: Sequence[str]) -> None:
    """``hardware=gpu`` (or ddp/fsdp) here without a GPU fails at once, not after 7 s of imports.

    Skipped when a cluster launcher runs the jobs elsewhere (``launcher=slurm``), on macOS (mps), and
    when ``REPROLAB_SKIP_GPU_CHECK=1``."""
    hardware = cfg.get("hardware")
    if not isinstance(hardware, DictConfig) or hardware.get("accelerator") not in ("gpu", "cuda"):
        return
    if sys.platform == "darwin" or os.environ.get("REPROLAB_SKIP_GPU_CHECK") == "1":
        return
    if any(o.startswith(("launcher=slurm", "hydra/launcher=submitit")) for o in overrides):
        return
    if not gpu_probe():
        raise ConfigError(
            f"hardware={hardware.get('name')} asks for a CUDA GPU (hardware.accelerator="
            f"{hardware.accelerator}), but this machine has none (no NVIDIA driver: /proc/driver/nvidia "
            "and nvidia-smi are missing). Use hardware=cpu, or launcher=slurm to run on a GPU cluster"
        )


# --- the command line -----------------------------------------------------------------------------------


def config_groups() -> dict[str, list[str]]:
    """Each group a user can choose (a folder of conf/) and its options, read from the folders alone:
    Hydra's own listing composes a repository per group and option (~2.5 s) and shows internal groups."""
    groups = {}
    for folder in sorted(p for p in (ROOT / "conf").iterdir() if p.is_dir()):
        if folder.name not in INTERNAL_GROUPS:
            groups[folder.name] = sorted(p.stem for p in folder.glob("*.yaml"))
    return groups


def help_text(cfg: DictConfig) -> str:
    """``python run.py [overrides] --help``: the groups a user can choose and the composed config."""
    groups = "\n".join(f"{group}: {', '.join(options)}" for group, options in config_groups().items())
    return (
        "reprolab: ten papers as method plugins of one Hydra runner.\n"
        "Usage: python run.py [group=option ...] [key=value ...]    one run\n"
        "       python run.py -m key=a,b ...                       a sweep (multirun)\n"
        "       python run.py ... --cfg job                        print the composed config, run nothing\n\n"
        "== Configuration groups ==\n"
        "Compose your configuration from those groups (group=option)\n\n"
        f"{groups}\n\n"
        "Per-method budgets follow from method and scale (conf/budget/<method>/<scale>.yaml).\n\n"
        "== Config ==\n"
        "Override anything in the config (foo.bar=value)\n\n"
        f"{OmegaConf.to_yaml(cfg)}\n"
        "Powered by Hydra (https://hydra.cc)\n"
        "Use --hydra-help to view Hydra specific help"
    )


def is_help(argv: Sequence[str]) -> bool:
    return any(a in ("--help", "-h") for a in argv)


def check_overrides(argv: Sequence[str]) -> None:
    """CLI wrapper: answer ``--help`` itself (fast), else print the problem and exit 2, no traceback."""
    try:
        if is_help(argv):
            print(help_text(validate_overrides(argv)))
            sys.exit(0)
        if any(a in ("--hydra-help", "--info", "--version", "-sc") or a.startswith("--shell") for a in argv):
            return
        validate_overrides(argv, check_machine=True)
    except ConfigError as ex:
        print(f"Config error: {ex}", file=sys.stderr)
        sys.exit(2)
