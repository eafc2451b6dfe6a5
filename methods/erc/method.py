"""The ERC/SAC environment loop: one screen, CleanRL-style, on Lightning Fabric.

Checkpoints are taken at episode ends (agent, optimisers, replay buffer, RNG states, step), so a
resumed run continues exactly where the interrupted one would have gone.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
from hydra.utils import instantiate
from lightning.fabric import Fabric

from methods.erc.agent import SACAgent
from methods.erc.config import ERCConfig
from methods.erc.replay import ReplayBuffer
from runners.context import RunContext
from runners.contract import LoopMethod

log = logging.getLogger("reprolab")


class ERC(LoopMethod):
    def __init__(self, **cfg: Any) -> None:
        self.cfg = ERCConfig(**cfg)

    def evaluate(self, agent: SACAgent, env: Any, episodes: int, seed: int) -> float:
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

    def td_error_stats(self, agent: SACAgent, buffer: ReplayBuffer) -> dict[str, float]:
        """Mean and dispersion (std over samples) of e_ij, averaged over the two critics."""
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
        agent = SACAgent(env.obs_dim, env.act_dim, list(ctx.cfg.model.hidden_dims), cfg, fabric)
        rng = np.random.default_rng(ctx.seed)
        buffer = ReplayBuffer(min(cfg.buffer_size, cfg.total_steps), env.obs_dim, env.act_dim, rng)
        step, episode, last_save, metrics = 0, 0, 0, {}

        # The runner's resume service restores torch's/numpy's RNGs, `rng` (shared with the buffer) and
        # the curves; the state below is ERC's own.
        ctx.checkpoint.track(rng=rng)
        state = ctx.checkpoint.load()
        if state is not None:
            agent.load_state_dict(state["agent"])
            buffer.load_state_dict(state["buffer"])
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
                                "buffer": buffer.state_dict(),
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
