"""DeepMind Control Suite tasks with flat state observations and action repeat.

dm-control ships its tasks in its PyPI wheel, so this is the real environment offline and online.
Episodes end by the suite's time limit (truncation: the agent still bootstraps) or, rarely, a terminal
state (discount 0).
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")  # no window system needed; state observations never render

import numpy as np
from dm_control import suite


def task_names() -> list[str]:
    return sorted(f"{domain}_{task}" for domain, task in suite.ALL_TASKS)


def split_task(name: str) -> tuple[str, str]:
    """'ball_in_cup_catch' → ('ball_in_cup', 'catch'); domains and tasks both contain underscores."""
    for domain, task in suite.ALL_TASKS:
        if f"{domain}_{task}" == name:
            return domain, task
    raise ValueError(f"env.task={name!r} is not a DMControl task; valid tasks: {', '.join(task_names())}")


class DMCEnv:
    def __init__(self, task: str, action_repeat: int = 1, seed: int = 0) -> None:
        domain, task_name = split_task(task)
        self.name = task
        self.action_repeat = action_repeat
        self._env = suite.load(domain, task_name, task_kwargs={"random": seed})
        spec = self._env.action_spec()
        self._low, self._high = spec.minimum.astype(np.float32), spec.maximum.astype(np.float32)
        self.act_dim = int(spec.shape[0])
        self.obs_dim = int(sum(np.prod(v.shape) for v in self._env.observation_spec().values()))

    @staticmethod
    def _flat(observation: dict) -> np.ndarray:
        return np.concatenate([np.asarray(v, dtype=np.float32).ravel() for v in observation.values()])

    def reset(self) -> np.ndarray:
        return self._flat(self._env.reset().observation)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool]:
        """Take an action in [-1, 1]^A; return (observation, summed reward, terminal, truncated)."""
        action = self._low + (np.clip(action, -1.0, 1.0) + 1.0) * 0.5 * (self._high - self._low)
        reward = 0.0
        for _ in range(self.action_repeat):
            ts = self._env.step(action)
            reward += ts.reward or 0.0
            if ts.last():
                break
        terminal = ts.last() and ts.discount == 0.0
        return self._flat(ts.observation), reward, terminal, ts.last() and not terminal

    def seed(self, seed: int) -> None:
        """Re-seed the task's randomness (initial states), e.g. a fresh, reproducible evaluation."""
        self._env.task.random.seed(seed)

    def rng_state(self) -> tuple:
        return self._env.task.random.get_state()

    def set_rng_state(self, state: tuple) -> None:
        self._env.task.random.set_state(state)
