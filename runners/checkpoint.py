"""Exact resume as a runner service: one file in the run dir, replaced atomically on every save.

A method hands :meth:`Checkpointer.save` only its own state (parameters, optimisers, buffers, counters)
and declares its private generators once with :meth:`Checkpointer.track`; the service adds what every
method of a kind needs for an exact resume, so no method repeats it:

- every global RNG state (python ``random``, numpy, torch CPU and CUDA) and each tracked generator,
- the run's learning curves (``ctx.curves``), so results.json keeps the points logged before a kill,
- the config identity (runners.identity): a checkpoint made with other settings is refused, not reused.

:meth:`Checkpointer.load` restores all of it in place and returns the method's state (None: start fresh).
Call it after building everything (initialisation may draw random numbers) and before the loop goes on.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from runners.atomic import write_atomic
from runners.identity import check_identity, config_identity

FORMAT = 2  # 1: a method's bare dict, without identity, RNG states or curves (refused on resume)

Generator = torch.Generator | np.random.Generator | random.Random


def capture_rng() -> dict[str, Any]:
    """Every global RNG state; CUDA only when it was initialised (asking would initialise it). Plain
    Python values and tensors only, so Lightning's ``weights_only`` checkpoint loading accepts them."""
    cuda = (
        torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    )
    return {
        "python": random.getstate(),
        "numpy": _numpy_state(),
        "torch": torch.get_rng_state(),
        "cuda": cuda,
    }


def _numpy_state() -> tuple:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return (name, keys.tolist(), int(pos), int(has_gauss), float(cached))


def restore_rng(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if states.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def generator_state(gen: Generator) -> Any:
    if isinstance(gen, torch.Generator):
        return gen.get_state()
    if isinstance(gen, np.random.Generator):
        return gen.bit_generator.state
    return gen.getstate()


def set_generator_state(gen: Generator, state: Any) -> None:
    """Restore in place, so every object sharing ``gen`` (a replay buffer, a sampler) sees the state."""
    if isinstance(gen, torch.Generator):
        gen.set_state(state)
    elif isinstance(gen, np.random.Generator):
        gen.bit_generator.state = state
    else:
        gen.setstate(state)


class Checkpointer:
    def __init__(
        self, path: Path, cfg: DictConfig | None = None, curves: dict[str, list[list[float]]] | None = None
    ) -> None:
        self.path = path
        self._cfg = cfg
        self._curves = curves if curves is not None else {}
        self._generators: dict[str, Generator] = {}
        self._payload: dict[str, Any] | None = None  # read by check(), reused by the next load()

    def track(self, **generators: Generator) -> None:
        """Declare the method's own generators; each is saved with the state and restored in place."""
        self._generators.update(generators)

    def identity(self) -> dict[str, Any]:
        return config_identity(self._cfg if self._cfg is not None else {})

    def save(self, state: dict[str, Any]) -> None:
        payload = {
            "format": FORMAT,
            "identity": self.identity(),
            "state": state,
            "rng": capture_rng(),
            "generators": {name: generator_state(g) for name, g in self._generators.items()},
            "curves": self._curves,
        }
        write_atomic(self.path, lambda f: torch.save(payload, f), mode="wb")

    def _read(self) -> dict[str, Any] | None:
        if self._payload is None and self.path.exists():
            self._payload = torch.load(self.path, map_location="cpu", weights_only=False)
        return self._payload

    def check(self) -> None:
        """Refuse (runners.identity.ResumeRefused) a checkpoint made with other settings."""
        payload = self._read()
        if payload is not None:
            stored = payload.get("identity") if isinstance(payload, dict) and "format" in payload else None
            check_identity(str(self.path), stored, self.identity())

    def load(self) -> dict[str, Any] | None:
        """The method's saved state, with RNG states, tracked generators and curves restored; None if none."""
        self.check()
        payload, self._payload = self._read(), None
        if payload is None:
            return None
        restore_rng(payload["rng"])
        for name, gen in self._generators.items():
            set_generator_state(gen, payload["generators"][name])
        self._curves.clear()
        self._curves.update(payload["curves"])
        return payload["state"]
