"""SAC with twin critics, plus ERC's eigensubspace regulariser on the critic loss (β = 0 gives SAC).

Follows the official ERC code (DMControl/ERC.py): actor, α and target networks update every
``policy_every`` critic steps; α's loss uses α itself (not log α), as the official code does.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import torch
from lightning.fabric import Fabric
from torch import Tensor, nn

from methods.erc.config import ERCConfig
from methods.erc.regularizer import eigensubspace_penalty
from runners.off_policy.fused_adam_step import adam_step
from runners.off_policy.networks import TanhGaussianActor, TwinCritic
from runners.off_policy.plain_fabric import backward_fn, bare


class Temperature(nn.Module):
    def __init__(self, init_alpha: float) -> None:
        super().__init__()
        self.log_alpha = nn.Parameter(torch.tensor(math.log(init_alpha)))

    def forward(self) -> Tensor:
        return self.log_alpha.exp()


class SACAgent:
    def __init__(self, obs_dim: int, act_dim: int, hidden_dims: list[int], cfg: ERCConfig, fabric: Fabric):
        self.cfg, self.fabric = cfg, fabric
        actor = TanhGaussianActor(obs_dim, act_dim, hidden_dims, cfg.log_std_min, cfg.log_std_max)
        critic = TwinCritic(obs_dim, act_dim, hidden_dims)
        temperature = Temperature(cfg.init_alpha)
        self.critic_target = copy.deepcopy(critic).requires_grad_(False).to(fabric.device)
        # fused Adam: one kernel per step, ~3x cheaper than the per-tensor CPU default
        self.actor, self.actor_opt = fabric.setup(
            actor, torch.optim.Adam(actor.parameters(), lr=cfg.actor_lr, fused=True)
        )
        self.actor.mark_forward_method("sample")
        self.actor.mark_forward_method("mean_action")
        self.critic, self.critic_opt = fabric.setup(
            critic, torch.optim.Adam(critic.parameters(), lr=cfg.critic_lr, fused=True)
        )
        self.temperature, self.alpha_opt = fabric.setup(
            temperature, torch.optim.Adam(temperature.parameters(), lr=cfg.alpha_lr, fused=True)
        )
        self.target_entropy = -float(act_dim) if cfg.target_entropy is None else cfg.target_entropy
        self.updates = 0
        # The hot path's modules, optimizers and backward: Fabric's wrappers above (state_dict, DDP,
        # mixed precision) or, on one device in fp32, the bare objects they wrap (plain_fabric).
        self._actor, self._critic, self._temperature = (
            bare(fabric, m) for m in (self.actor, self.critic, self.temperature)
        )
        self._actor_opt, self._critic_opt, self._alpha_opt = (
            bare(fabric, o) for o in (self.actor_opt, self.critic_opt, self.alpha_opt)
        )
        self._backward = backward_fn(fabric)
        self._critic_params = list(critic.parameters())
        self._target_params = list(self.critic_target.parameters())

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool) -> np.ndarray:
        x = torch.as_tensor(obs, device=self.fabric.device).unsqueeze(0)
        action = self._actor.mean_action(x) if deterministic else self._actor.sample(x)[0]
        return action[0].cpu().numpy()

    @torch.no_grad()
    def td_target(self, rew: Tensor, next_obs: Tensor, not_done: Tensor) -> Tensor:
        """y = r + γ(1 − d)(min_j Q̄_j(s′, a′) − α log π(a′|s′)), a′ ~ π(·|s′)."""
        next_act, next_logp = self._actor.sample(next_obs)
        alpha = self._temperature()
        next_v = self.critic_target(next_obs, next_act).min(dim=0).values - alpha * next_logp
        return rew + not_done * self.cfg.gamma * next_v

    @torch.no_grad()
    def squared_td_errors(self, batch: tuple[Tensor, ...]) -> Tensor:
        """e_ij = (Q_j(s_i, a_i) − y_i)², shape [2, batch]: the quantity whose dispersion ERC shrinks."""
        obs, act, rew, next_obs, not_done = batch
        return (self._critic(obs, act) - self.td_target(rew, next_obs, not_done)).pow(2)

    def update(self, batch: tuple[Tensor, ...]) -> dict[str, Tensor]:
        cfg = self.cfg
        obs, act, rew, next_obs, not_done = batch
        y = self.td_target(rew, next_obs, not_done)
        sq_err = (self._critic(obs, act) - y).pow(2)  # e_ij, [2, batch]
        td_loss = sq_err.mean(dim=-1).sum()
        penalty = (
            eigensubspace_penalty(sq_err, cfg.beta, cfg.reg_clip) if cfg.beta > 0 else td_loss.new_zeros(())
        )
        self._critic_opt.zero_grad(set_to_none=True)
        self._backward(td_loss + penalty)
        adam_step(self._critic_opt)
        self.updates += 1
        stats = {"critic/td_loss": td_loss.detach(), "critic/erc_penalty": penalty.detach()}
        if self.updates % cfg.policy_every == 0:
            stats.update(self._update_actor_and_alpha(obs))
            torch._foreach_lerp_(self._target_params, self._critic_params, cfg.tau)
        return stats

    def _update_actor_and_alpha(self, obs: Tensor) -> dict[str, Tensor]:
        alpha = self._temperature()
        action, logp = self._actor.sample(obs)
        self._critic.requires_grad_(False)  # the actor loss needs ∂Q/∂a only, not critic weight gradients
        q = self._critic(obs, action).min(dim=0).values
        self._critic.requires_grad_(True)
        actor_loss = (alpha.detach() * logp - q).mean()
        self._actor_opt.zero_grad(set_to_none=True)
        self._backward(actor_loss)
        adam_step(self._actor_opt)
        stats = {
            "actor/loss": actor_loss.detach(),
            "actor/entropy": -logp.detach().mean(),
            "alpha": alpha.detach(),
        }
        if self.cfg.learn_alpha:
            alpha_loss = (alpha * (-logp.detach() - self.target_entropy)).mean()
            self._alpha_opt.zero_grad(set_to_none=True)
            self._backward(alpha_loss)
            adam_step(self._alpha_opt)
        return stats

    def state_dict(self) -> dict[str, Any]:
        return {
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "critic_target": self.critic_target.state_dict(),
            "temperature": self.temperature.state_dict(),
            "actor_opt": self.actor_opt.state_dict(),
            "critic_opt": self.critic_opt.state_dict(),
            "alpha_opt": self.alpha_opt.state_dict(),
            "updates": self.updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in (
            "actor",
            "critic",
            "critic_target",
            "temperature",
            "actor_opt",
            "critic_opt",
            "alpha_opt",
        ):
            getattr(self, key).load_state_dict(state[key])
        self.updates = state["updates"]
