"""TD3's update (Fujimoto et al. 2018): target smoothing noise clipped, clipped double-Q target, the actor
and both targets updated every 2nd critic step with Polyak τ, exploration noise σ = 0.1."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lightning.fabric import Fabric

from methods.td3.agent import TD3Agent
from methods.td3.config import TD3Config


def make_agent(**cfg) -> TD3Agent:
    torch.manual_seed(0)
    return TD3Agent(3, 2, [16, 16], TD3Config(**cfg), Fabric(accelerator="cpu", devices=1))


def batch(n: int = 64) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(1)
    obs, act = torch.randn(n, 3, generator=g), torch.rand(n, 2, generator=g) * 2 - 1
    return (
        obs,
        act,
        torch.randn(n, generator=g),
        torch.randn(n, 3, generator=g),
        (torch.arange(n) % 5 != 0).float(),
    )


def params(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def changed(before: list[torch.Tensor], module: torch.nn.Module) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(before, module.parameters(), strict=True))


def test_defaults_are_the_td3_papers() -> None:
    cfg = TD3Config()
    assert (cfg.policy_noise, cfg.noise_clip, cfg.expl_noise, cfg.policy_every, cfg.tau) == (
        0.2,
        0.5,
        0.1,
        2,
        0.005,
    )


def test_target_smoothing_noise_is_clipped_and_the_action_kept_in_the_box() -> None:
    agent = make_agent(policy_noise=10.0)  # huge σ̃: nearly every draw hits the clip c = 0.5
    last = agent.actor_target.net[-1]
    torch.nn.init.zeros_(last.weight)
    next_obs = torch.randn(4096, 3)
    torch.nn.init.zeros_(last.bias)  # μ̄ = 0: the smoothed action is the clipped noise itself
    a = agent.target_action(next_obs)
    assert a.abs().max().item() == pytest.approx(0.5) and (a.abs() > 0.499).float().mean() > 0.9
    last.bias.data.fill_(3.0)  # μ̄ = tanh(3) ≈ 0.995: μ̄ + noise is clipped to the action box
    a = agent.target_action(next_obs)
    assert a.max().item() == pytest.approx(1.0) and a.min().item() == pytest.approx(0.995 - 0.5, abs=1e-2)

    agent = make_agent()  # σ̃ = 0.2, c = 0.5 = 2.5σ̃: the noise is N(0, 0.2²) truncated at ±2.5σ̃
    torch.nn.init.zeros_(agent.actor_target.net[-1].weight)
    torch.nn.init.zeros_(agent.actor_target.net[-1].bias)
    a = agent.target_action(torch.randn(20000, 3))
    assert a.abs().max().item() <= 0.5 + 1e-6
    assert a.std().item() == pytest.approx(0.2 * 0.9707, rel=0.03)  # std of N(0,1) truncated at ±2.5


def test_td_target_is_the_clipped_double_q_by_hand() -> None:
    agent = make_agent(policy_noise=0.0)
    _, _, rew, next_obs, not_done = batch()
    with torch.no_grad():
        q = agent.critic_target(next_obs, agent.actor_target(next_obs))  # [2, batch]
        expected = rew + 0.99 * not_done * torch.minimum(q[0], q[1])
    torch.testing.assert_close(agent.td_target(rew, next_obs, not_done), expected)


def test_actor_and_targets_update_every_second_step_with_polyak_tau() -> None:
    agent = make_agent()
    actor0, critic0 = params(agent.actor), params(agent.critic)
    actor_t0, critic_t0 = params(agent.actor_target), params(agent.critic_target)

    stats = agent.update(batch())  # step 1: the critic only
    assert changed(critic0, agent.critic) and not changed(actor0, agent.actor)
    assert not changed(actor_t0, agent.actor_target) and not changed(critic_t0, agent.critic_target)
    assert "actor/loss" not in stats

    stats = agent.update(batch())  # step 2: actor, then θ′ ← τθ + (1 − τ)θ′ for both targets
    assert changed(actor0, agent.actor) and "actor/loss" in stats
    for target0, online, target in (
        (actor_t0, agent.actor, agent.actor_target),
        (critic_t0, agent.critic, agent.critic_target),
    ):
        for t0, p, t in zip(target0, online.parameters(), target.parameters(), strict=True):
            torch.testing.assert_close(t, t0 + 0.005 * (p.detach() - t0))

    actor2 = params(agent.actor)
    agent.update(batch())  # step 3: the critic only again
    assert not changed(actor2, agent.actor) and agent.updates == 3


def test_actor_loss_follows_q1_up() -> None:
    """One actor step on a fixed critic raises Q_1(s, μ(s)) (gradient ascent on the first critic)."""
    agent = make_agent()
    obs = batch()[0]
    with torch.no_grad():
        before = agent.critic(obs, agent.actor(obs))[0].mean()
    agent.critic_opt.param_groups[0]["lr"] = 0.0  # freeze the critic's step so only the actor moves
    agent.update(batch())
    agent.update(batch())
    with torch.no_grad():
        after = agent.critic(obs, agent.actor(obs))[0].mean()
    assert after > before


def test_exploration_noise_has_sigma_0_1_and_stays_in_the_box() -> None:
    agent = make_agent()
    obs = batch()[0][0].numpy()
    mean = agent.act(obs, deterministic=True)
    noisy = torch.from_numpy(np.stack([agent.act(obs, deterministic=False) for _ in range(4000)]))
    assert noisy.abs().max() <= 1.0
    inside = (torch.tensor(mean).abs() < 0.6).nonzero().flatten()  # dims far from the clip
    assert len(inside) > 0
    torch.testing.assert_close(noisy[:, inside].std(0), torch.full((len(inside),), 0.1), atol=0.01, rtol=0)
    torch.testing.assert_close(noisy[:, inside].mean(0), torch.tensor(mean)[inside], atol=0.01, rtol=0)
