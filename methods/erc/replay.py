"""A uniform replay buffer in preallocated float32 arrays, with its own RNG so runs resume exactly."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor


class ReplayBuffer:
    def __init__(self, capacity: int, obs_dim: int, act_dim: int, rng: np.random.Generator) -> None:
        self.capacity, self.rng = capacity, rng
        self.obs = np.zeros((capacity, obs_dim), np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), np.float32)
        self.act = np.zeros((capacity, act_dim), np.float32)
        self.rew = np.zeros(capacity, np.float32)
        self.not_done = np.zeros(capacity, np.float32)
        self.ptr = self.size = 0

    def add(self, obs: np.ndarray, act: np.ndarray, rew: float, next_obs: np.ndarray, terminal: bool) -> None:
        i = self.ptr
        self.obs[i], self.act[i], self.rew[i], self.next_obs[i] = obs, act, rew, next_obs
        self.not_done[i] = 0.0 if terminal else 1.0
        self.ptr = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int, device: torch.device) -> tuple[Tensor, ...]:
        idx = self.rng.integers(0, self.size, size=batch_size)
        arrays = (self.obs, self.act, self.rew, self.next_obs, self.not_done)
        return tuple(torch.from_numpy(a[idx]).to(device, non_blocking=True) for a in arrays)

    def state_dict(self) -> dict[str, Any]:
        n = self.size
        return {
            "obs": self.obs[:n].copy(),
            "next_obs": self.next_obs[:n].copy(),
            "act": self.act[:n].copy(),
            "rew": self.rew[:n].copy(),
            "not_done": self.not_done[:n].copy(),
            "ptr": self.ptr,
            "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        n = len(state["rew"])
        for key in ("obs", "next_obs", "act", "rew", "not_done"):
            getattr(self, key)[:n] = state[key]
        self.size, self.ptr = n, state["ptr"]
        self.rng.bit_generator.state = state["rng"]
