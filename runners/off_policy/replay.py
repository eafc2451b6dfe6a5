"""A uniform replay buffer in preallocated float32 arrays, with its own RNG so runs resume exactly.

Checkpoints are incremental: :meth:`ReplayBuffer.save` writes only the transitions added since the previous
save, as one append-only chunk file, and returns a small manifest (chunk names, counters, RNG state) for the
checkpoint. A full copy of a 1M-transition buffer is ≈0.5 GB per checkpoint; a chunk of 5,000 transitions is
≈3 MB (bench/erc_checkpoint.py measures both). Chunks are named by the ids of the transitions they hold (the
running count of ``add`` calls), so names never repeat, and a chunk left by a killed attempt after its last
checkpoint is unreferenced: :meth:`load` deletes it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from runners.atomic import write_atomic

FIELDS = ("obs", "act", "rew", "next_obs", "not_done")


def _chunk_range(name: str) -> tuple[int, int]:
    """'chunk_000000000000_000000005000.npz' → (0, 5000): the ids [first, end) it holds."""
    first, end = Path(name).stem.split("_")[1:]
    return int(first), int(end)


class ReplayBuffer:
    def __init__(self, capacity: int, obs_dim: int, act_dim: int, rng: np.random.Generator) -> None:
        self.capacity, self.rng = capacity, rng
        self.obs = np.zeros((capacity, obs_dim), np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), np.float32)
        self.act = np.zeros((capacity, act_dim), np.float32)
        self.rew = np.zeros(capacity, np.float32)
        self.not_done = np.zeros(capacity, np.float32)
        self.ptr = self.size = 0
        self.added = 0  # transitions ever added; transition id k sits at ring slot k % capacity
        self._saved = 0  # ids [0, _saved) are on disk in self._chunks
        self._chunks: list[str] = []
        self._obsolete: list[str] = []  # chunks dropped from the manifest at the last save
        self._fresh = True  # nothing saved or loaded yet: chunk files in the directory are stale

    def add(self, obs: np.ndarray, act: np.ndarray, rew: float, next_obs: np.ndarray, terminal: bool) -> None:
        i = self.ptr
        self.obs[i], self.act[i], self.rew[i], self.next_obs[i] = obs, act, rew, next_obs
        self.not_done[i] = 0.0 if terminal else 1.0
        self.ptr = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)
        self.added += 1

    def sample(self, batch_size: int, device: torch.device) -> tuple[Tensor, ...]:
        idx = self.rng.integers(0, self.size, size=batch_size)
        arrays = (self.obs, self.act, self.rew, self.next_obs, self.not_done)
        return tuple(torch.from_numpy(a[idx]).to(device, non_blocking=True) for a in arrays)

    def save(self, directory: Path) -> dict[str, Any]:
        """Write the transitions added since the last save to ``directory``; return the manifest.

        Call it right before the checkpoint that stores the manifest is written. Chunks whose transitions
        have all been overwritten (the ring wrapped) leave the manifest now and are deleted at the next save,
        when the checkpoint that still named them has been replaced.
        """
        directory.mkdir(parents=True, exist_ok=True)
        if self._fresh:  # a rerun or a fresh start: nothing in the directory belongs to this run
            for stale in directory.glob("chunk_*.npz"):
                stale.unlink()
            self._fresh = False
        for name in self._obsolete:
            (directory / name).unlink(missing_ok=True)
        first = max(self._saved, self.added - self.capacity)
        if first < self.added:
            name = f"chunk_{first:012d}_{self.added:012d}.npz"
            slots = np.arange(first, self.added) % self.capacity
            arrays = {key: getattr(self, key)[slots] for key in FIELDS}
            write_atomic(directory / name, lambda f: np.savez(f, **arrays), mode="wb")
            self._chunks.append(name)
            self._saved = self.added
        oldest_live = self.added - self.capacity
        self._obsolete = [n for n in self._chunks if _chunk_range(n)[1] <= oldest_live]
        self._chunks = [n for n in self._chunks if n not in self._obsolete]
        return {**self._counters(), "chunks": list(self._chunks)}

    def load(self, directory: Path, manifest: dict[str, Any]) -> None:
        """Rebuild the buffer from ``manifest``'s chunks in ``directory`` (in order: later ones overwrite)."""
        for name in manifest["chunks"]:
            first, end = _chunk_range(name)
            with np.load(directory / name) as chunk:
                slots = np.arange(first, end) % self.capacity
                for key in FIELDS:
                    getattr(self, key)[slots] = chunk[key]
        keep = set(manifest["chunks"])
        for stale in directory.glob("chunk_*.npz"):  # written by a killed attempt after its last checkpoint
            if stale.name not in keep:
                stale.unlink()
        self._set_counters(manifest)
        self._chunks, self._saved = list(manifest["chunks"]), self.added
        self._obsolete, self._fresh = [], False

    def state_dict(self) -> dict[str, Any]:
        """The whole buffer inline (a copy of every filled row): for small buffers and tests."""
        n = self.size
        return {**self._counters(), **{key: getattr(self, key)[:n].copy() for key in FIELDS}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        n = len(state["rew"])
        for key in FIELDS:
            getattr(self, key)[:n] = state[key]
        self._set_counters(state)

    def _counters(self) -> dict[str, Any]:
        return {"ptr": self.ptr, "size": self.size, "added": self.added, "rng": self.rng.bit_generator.state}

    def _set_counters(self, state: dict[str, Any]) -> None:
        self.size, self.ptr, self.added = state["size"], state["ptr"], state["added"]
        self.rng.bit_generator.state = state["rng"]
