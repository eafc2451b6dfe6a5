"""One Lightning fit of the instruction tuner on the hardware it is given: one device, DDP or FSDP.

The tuner's fit runs inside a pipeline stage (IFD, AlpaGasus), so a multi-process fit is an episode of a
single-process run: Lightning's launcher re-executes ``run.py`` for ranks 1..N-1 (they reuse rank 0's
finished stages and reach the same fit), the ranks train together, and then

- ranks 1..N-1 leave (``WorkerFinished``, caught by the worker runner): saving, generation and the later
  stages are rank 0's alone, so nothing is written twice and no collective waits on a rank that went on;
- rank 0 closes the process group and clears the variables the launcher set, so the next fit of the run
  (IFD tunes twice: pre-experience, then the selected data) launches fresh ranks the same way.

A rank started by an external launcher (torchrun, SLURM tasks) runs the whole pipeline itself, so this
episode model does not apply: the fit is refused there with what to use instead.

FSDP (the official AlpaGasus/Alpaca recipe: ``--fsdp "full_shard auto_wrap"``,
``--fsdp_transformer_layer_cls_to_wrap LlamaDecoderLayer``, ``--bf16``) wraps each decoder layer of the
model in its own FSDP unit; Lightning's ``bf16-mixed`` FSDP precision computes in bf16 over the fp32
flat parameters (the fp32 master weights). After the fit every rank joins the gathering of the full
state dict, which rank 0 loads into an unsharded copy of the model.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from runners.distributed import (
    WorkerFinished,
    launch_episode,
    launched_externally,
    planned_world_size,
    strategy_family,
)

# Set by rank 0 before it launches ranks for one fit; inherited by them, so they know to leave after it.
LAUNCHED_FOR_FIT = "REPROLAB_LAUNCHED_FOR_FIT"


def world_size(hardware: Any) -> int:
    return planned_world_size(hardware) if hardware is not None else 1


def decoder_layer_classes(model: Any) -> set[type[torch.nn.Module]]:
    """The classes of the model's decoder layers (transformers' ``_no_split_modules``, e.g.
    ``LlamaDecoderLayer``): FSDP's auto-wrap policy, one unit per layer, as the official
    ``fsdp_transformer_layer_cls_to_wrap``."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    names = set(getattr(base, "_no_split_modules", None) or ())
    classes = {type(m) for m in base.modules() if type(m).__name__ in names}
    if not classes:
        raise ValueError(
            f"hardware=fsdp: {type(base).__name__} names no decoder-layer class to wrap "
            f"(_no_split_modules={sorted(names)}); use hardware=ddp"
        )
    return classes


def strategy_for(hardware: Any, model: Any) -> Any:
    """Lightning's strategy for ``hardware.strategy``: its name, or for FSDP a configured FSDPStrategy."""
    name = str(getattr(hardware, "strategy", "auto")) if hardware is not None else "auto"
    if strategy_family(name) != "fsdp":
        return name
    from lightning.pytorch.strategies import FSDPStrategy

    return FSDPStrategy(
        auto_wrap_policy=decoder_layer_classes(model),
        sharding_strategy="FULL_SHARD",  # the official "full_shard"
        state_dict_type="full",
        # Lightning's default, kept explicit: the optimizer is built over the module's own parameters
        # (configure_optimizers), and LoRA's frozen and trainable parameters share each layer's unit
        use_orig_params=True,
    )


@contextmanager
def fit_episode(hardware: Any) -> Iterator[None]:
    """Around one multi-process fit: before it, mark the ranks rank 0 will launch; after it, ranks the
    launcher made for it leave, and rank 0 closes the group so the next fit launches afresh."""
    if world_size(hardware) == 1:
        yield
        return
    if launched_externally():
        raise ValueError(
            "the instruction tuner runs inside a pipeline stage: under an external launcher (torchrun, "
            "SLURM tasks) every rank would run the whole pipeline. Launch run.py once with "
            "hardware.devices=N on one node (Lightning starts the ranks for each fit)"
        )
    if LAUNCHED_FOR_FIT in os.environ:  # a rank rank 0 launched for this fit: it leaves after it
        yield
        raise WorkerFinished
    with launch_episode(LAUNCHED_FOR_FIT):  # rank 0: it will launch the others
        os.environ[LAUNCHED_FOR_FIT] = "1"
        yield


def unsharded(trainer: Any, model: Any, wrap: Callable[[Any], Any] = lambda m: m) -> Any:
    """After an FSDP fit: the full state dict, gathered on every rank (a collective) and loaded on rank 0
    into an unsharded copy of ``model`` (``wrap`` adds what the tuner added: LoRA), on the trainer's root
    device; other ranks get None."""
    from transformers.modeling_utils import no_init_weights

    state = trainer.strategy.lightning_module_state_dict()  # FULL_STATE_DICT, rank 0 only, on the CPU
    if not trainer.is_global_zero:
        return None
    with no_init_weights():
        fresh = wrap(type(model)(model.config).to(model.dtype))
    own = {k.removeprefix("model."): v for k, v in state.items()}
    missing, unexpected = fresh.load_state_dict(own, strict=False)
    tied = {k for k in missing if k.endswith("lm_head.weight")} if model.config.tie_word_embeddings else set()
    if set(missing) - tied or unexpected:
        raise RuntimeError(f"FSDP state dict: missing {sorted(missing)}, unexpected {sorted(unexpected)}")
    fresh.tie_weights()
    return fresh.to(trainer.strategy.root_device)
