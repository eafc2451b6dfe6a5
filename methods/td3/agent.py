"""The TD3 agent (Fujimoto et al. 2018, Algorithm 1): twin critics with clipped double-Q targets, target
policy smoothing and delayed actor/target updates, on the shared networks (runners.off_policy.networks).

Noise is drawn from torch's global generator, which the checkpoint service saves and restores, so a resumed
run draws the same noise as an uninterrupted one.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from lightning.fabric import Fabric
from torch import Tensor

from methods.td3.config import TD3Config
from runners.off_policy.fused_adam_step import adam_step
from runners.off_policy.networks import DeterministicActor, TwinCritic
from runners.off_policy.plain_fabric import backward_fn, bare

MODULES = ("actor", "critic", "actor_target", "critic_target", "actor_opt", "critic_opt")


class TD3Agent:
    def __init__(self, obs_dim: int, act_dim: int, hidden_dims: list[int], cfg: TD3Config, fabric: Fabric):
        self.cfg, self.fabric = cfg, fabric
        actor, critic = (
            DeterministicActor(obs_dim, act_dim, hidden_dims),
            TwinCritic(obs_dim, act_dim, hidden_dims),
        )
        self.actor_target = copy.deepcopy(actor).requires_grad_(False).to(fabric.device)
        self.critic_target = copy.deepcopy(critic).requires_grad_(False).to(fabric.device)
        self.actor, self.actor_opt = fabric.setup(
            actor, torch.optim.Adam(actor.parameters(), lr=cfg.actor_lr, fused=True)
        )
        self.critic, self.critic_opt = fabric.setup(
            critic, torch.optim.Adam(critic.parameters(), lr=cfg.critic_lr, fused=True)
        )
        self.updates = 0
        # the hot path's bare modules/optimizers where Fabric's wrappers add nothing (plain_fabric)
        self._actor, self._critic = bare(fabric, self.actor), bare(fabric, self.critic)
        self._actor_opt, self._critic_opt = bare(fabric, self.actor_opt), bare(fabric, self.critic_opt)
        self._backward = backward_fn(fabric)
        self._online = [*actor.parameters(), *critic.parameters()]
        self._targets = [*self.actor_target.parameters(), *self.critic_target.parameters()]

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool) -> np.ndarray:
        action = self._actor(torch.as_tensor(obs, device=self.fabric.device).unsqueeze(0))[0]
        if not deterministic:
            action = (action + self.cfg.expl_noise * torch.randn_like(action)).clamp(-1.0, 1.0)
        return action.cpu().numpy()

    @torch.no_grad()
    def target_action(self, next_obs: Tensor) -> Tensor:
        """ã = clip(μ̄(s′) + clip(ε, −c, c), −1, 1), ε ~ N(0, σ̃²): target policy smoothing (Eq. 14)."""
        mu = self.actor_target(next_obs)
        noise = (self.cfg.policy_noise * torch.randn_like(mu)).clamp(
            -self.cfg.noise_clip, self.cfg.noise_clip
        )
        return (mu + noise).clamp(-1.0, 1.0)

    @torch.no_grad()
    def td_target(self, rew: Tensor, next_obs: Tensor, not_done: Tensor) -> Tensor:
        """y = r + γ(1 − d) min_j Q̄_j(s′, ã): clipped double Q-learning (Eq. 10)."""
        q = self.critic_target(next_obs, self.target_action(next_obs)).min(dim=0).values
        return rew + not_done * self.cfg.gamma * q

    @torch.no_grad()
    def squared_td_errors(self, batch: tuple[Tensor, ...]) -> Tensor:
        obs, act, rew, next_obs, not_done = batch
        return (self._critic(obs, act) - self.td_target(rew, next_obs, not_done)).pow(2)

    def update(self, batch: tuple[Tensor, ...]) -> dict[str, Tensor]:
        obs, act, rew, next_obs, not_done = batch
        y = self.td_target(rew, next_obs, not_done)
        critic_loss = (self._critic(obs, act) - y).pow(2).mean(dim=-1).sum()  # Σ_j MSE(Q_j, y)
        self._critic_opt.zero_grad(set_to_none=True)
        self._backward(critic_loss)
        adam_step(self._critic_opt)
        self.updates += 1
        stats = {"critic/td_loss": critic_loss.detach()}
        if self.updates % self.cfg.policy_every == 0:
            self._critic.requires_grad_(False)
            actor_loss = -self._critic(obs, self._actor(obs))[0].mean()  # ∇_φ Q_θ1(s, μ_φ(s)), Q_1 only
            self._critic.requires_grad_(True)
            self._actor_opt.zero_grad(set_to_none=True)
            self._backward(actor_loss)
            adam_step(self._actor_opt)
            torch._foreach_lerp_(self._targets, self._online, self.cfg.tau)  # θ′ ← τθ + (1 − τ)θ′
            stats["actor/loss"] = actor_loss.detach()
        return stats

    def state_dict(self) -> dict[str, Any]:
        return {**{key: getattr(self, key).state_dict() for key in MODULES}, "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in MODULES:
            getattr(self, key).load_state_dict(state[key])
        self.updates = state["updates"]
