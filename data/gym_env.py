"""Gymnasium's MuJoCo tasks (HalfCheetah-v5, Hopper-v5, ...) behind the interface of data.dmc.DMCEnv.

The off-policy loop (runners.off_policy.loop) needs only: ``name``, ``obs_dim``, ``act_dim``, ``reset``,
``step`` taking an action in [-1, 1]^A and returning (observation, summed reward, terminal, truncated),
``seed`` and ``rng_state``/``set_rng_state``. Gymnasium's ``terminated`` (a fallen Hopper) is a terminal state
(no bootstrap); its ``TimeLimit`` (1000 steps for these tasks) is truncation. gymnasium[mujoco] ships the
models in its wheel, so this runs offline.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


class GymEnv:
    def __init__(self, task: str, action_repeat: int = 1, seed: int = 0) -> None:
        self.name = task
        self.action_repeat = action_repeat
        self._env = gym.make(task)
        space = self._env.action_space
        self._low, self._high = space.low.astype(np.float32), space.high.astype(np.float32)
        self.act_dim = int(np.prod(space.shape))
        self.obs_dim = int(np.prod(self._env.observation_space.shape))
        self._seed: int | None = seed  # applied by the next reset, as gymnasium seeds its generator

    def reset(self) -> np.ndarray:
        obs, _ = self._env.reset(seed=self._seed)
        self._seed = None
        return np.asarray(obs, np.float32).ravel()

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool]:
        """Take an action in [-1, 1]^A; return (observation, summed reward, terminal, truncated)."""
        action = self._low + (np.clip(action, -1.0, 1.0) + 1.0) * 0.5 * (self._high - self._low)
        reward, terminal, truncated = 0.0, False, False
        for _ in range(self.action_repeat):
            obs, r, terminal, truncated, _ = self._env.step(action)
            reward += float(r)
            if terminal or truncated:
                break
        return np.asarray(obs, np.float32).ravel(), reward, bool(terminal), bool(truncated)

    def seed(self, seed: int) -> None:
        """Re-seed the task's randomness (initial states) from the next reset: a reproducible evaluation."""
        self._seed = seed

    def rng_state(self) -> dict[str, Any]:
        return {"np_random": self._env.unwrapped.np_random.bit_generator.state, "seed": self._seed}

    def set_rng_state(self, state: dict[str, Any]) -> None:
        # gymnasium's np_random property creates the generator on first access; its state is replaced here
        self._env.unwrapped.np_random.bit_generator.state = state["np_random"]
        self._seed = state["seed"]
