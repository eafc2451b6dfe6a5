"""The off-policy environment loop shared by ERC, SAC and TD3: one screen, CleanRL-style, on Lightning Fabric.

A method subclasses :class:`OffPolicyMethod`, names its config schema and builds its agent; the loop does the
rest: uniformly random actions for ``learning_starts`` steps, then the agent's ``act``; ``utd_ratio`` agent
updates per environment step; every ``eval_every`` steps the mean return of the deterministic policy and
the TD-error statistics on a replay sample; checkpoints at episode ends.

Checkpoints hold the agent, counters, the environment's RNG and the replay buffer's manifest; the buffer's
transitions go to append-only chunk files beside ``checkpoint.pt`` (runners.off_policy.replay), so each
checkpoint writes only the steps taken since the previous one. A resumed run continues exactly where the
interrupted one would have gone.
"""

from __future__ import annotations

import logging
import time
from abc import abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
from hydra.utils import instantiate
from lightning.fabric import Fabric
from torch import Tensor

from runners.context import RunContext
from runners.contract import LoopMethod
from runners.off_policy.config import OffPolicyConfig
from runners.off_policy.replay import ReplayBuffer

log = logging.getLogger("reprolab")


class Agent(Protocol):
    fabric: Fabric

    def act(self, obs: np.ndarray, deterministic: bool) -> np.ndarray: ...

    def update(self, batch: tuple[Tensor, ...]) -> dict[str, Tensor]: ...

    def squared_td_errors(self, batch: tuple[Tensor, ...]) -> Tensor:
        """e_ij = (Q_j(s_i, a_i) − y_i)², shape [critics, batch]."""
        ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def buffer_dir(ctx: RunContext) -> Path:
    """Where the replay chunks live: under the run's ``checkpoints/``, which ``rerun=true`` clears."""
    return ctx.checkpoint.path.parent / "checkpoints" / "replay"


class OffPolicyMethod(LoopMethod):
    config_class: ClassVar[type[OffPolicyConfig]]

    def __init__(self, **cfg: Any) -> None:
        self.cfg = self.config_class(**cfg)

    @abstractmethod
    def make_agent(self, obs_dim: int, act_dim: int, hidden_dims: list[int], fabric: Fabric) -> Agent:
        """The method's agent, built on ``fabric`` (called once per run, before the replay buffer)."""

    def evaluate(self, agent: Agent, env: Any, episodes: int, seed: int) -> float:
        """Mean return of the deterministic policy over fresh episodes seeded by ``seed``."""
        env.seed(seed)
        returns = []
        for _ in range(episodes):
            obs, done, total = env.reset(), False, 0.0
            while not done:
                obs, reward, terminal, truncated = env.step(agent.act(obs, deterministic=True))
                total, done = total + reward, terminal or truncated
            returns.append(total)
        return float(np.mean(returns))

    def td_error_stats(self, agent: Agent, buffer: ReplayBuffer) -> dict[str, float]:
        """Mean and dispersion (std over samples) of e_ij, averaged over the critics."""
        batch = buffer.sample(min(self.cfg.td_probe_size, buffer.size), agent.fabric.device)
        sq_err = agent.squared_td_errors(batch)
        return {
            "td_error_mean": sq_err.mean(dim=-1).mean().item(),
            "td_error_dispersion": sq_err.std(dim=-1).mean().item(),
        }

    def run(self, ctx: RunContext, fabric: Fabric) -> dict[str, float]:
        cfg = self.cfg
        env = instantiate(ctx.cfg.env, seed=ctx.seed)
        eval_env = instantiate(ctx.cfg.env, seed=ctx.seed + 1)
        agent = self.make_agent(env.obs_dim, env.act_dim, list(ctx.cfg.model.hidden_dims), fabric)
        rng = np.random.default_rng(ctx.seed)
        buffer = ReplayBuffer(min(cfg.buffer_size, cfg.total_steps), env.obs_dim, env.act_dim, rng)
        step, episode, last_save, metrics = 0, 0, 0, {}

        # The runner's resume service restores torch's/numpy's RNGs, `rng` (shared with the buffer) and
        # the curves; the state below is the loop's own.
        ctx.checkpoint.track(rng=rng)
        state = ctx.checkpoint.load()
        if state is not None:
            agent.load_state_dict(state["agent"])
            buffer.load(buffer_dir(ctx), state["buffer"])
            env.set_rng_state(state["env_rng"])
            step, episode, metrics = state["step"], state["episode"], state["metrics"]
            last_save = step
            log.info("resumed from %s at step %d", ctx.checkpoint.path, step)

        obs, episode_return, t0, t0_step = env.reset(), 0.0, time.perf_counter(), step
        with ctx.progress(cfg.total_steps, f"{cfg.name} {env.name} seed {ctx.seed}", completed=step) as bar:
            while step < cfg.total_steps:
                if step < cfg.learning_starts:
                    action = rng.uniform(-1.0, 1.0, env.act_dim).astype(np.float32)
                else:
                    action = agent.act(obs, deterministic=False)
                next_obs, reward, terminal, truncated = env.step(action)
                buffer.add(obs, action, reward, next_obs, terminal)
                obs, episode_return, step = next_obs, episode_return + reward, step + 1

                if step >= cfg.learning_starts:
                    for _ in range(cfg.utd_ratio):
                        stats = agent.update(buffer.sample(cfg.batch_size, fabric.device))
                    if step % 1000 == 0:
                        sps = (step - t0_step) / (time.perf_counter() - t0)
                        ctx.log({**{k: v.item() for k, v in stats.items()}, "steps_per_second": sps}, step)

                if step % cfg.eval_every == 0 or step == cfg.total_steps:
                    metrics = {
                        "eval_return": self.evaluate(agent, eval_env, cfg.eval_episodes, ctx.seed + step)
                    }
                    metrics.update(self.td_error_stats(agent, buffer))
                    ctx.log(metrics, step, curve=True)
                    bar.update(advance=0, info=f"return {metrics['eval_return']:.1f}")

                if terminal or truncated:
                    episode += 1
                    ctx.log({"train/episode_return": episode_return}, step)
                    every = ctx.cfg.checkpoint_every
                    if every > 0 and step - last_save >= every and step < cfg.total_steps:
                        ctx.checkpoint.save(
                            {
                                "agent": agent.state_dict(),
                                "buffer": buffer.save(buffer_dir(ctx)),
                                "env_rng": env.rng_state(),
                                "step": step,
                                "episode": episode,
                                "metrics": metrics,
                            }
                        )
                        last_save = step
                    obs, episode_return = env.reset(), 0.0
                bar.update()
        return metrics
