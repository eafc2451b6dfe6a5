"""ERC/SAC building blocks: networks, replay buffer, DMControl wrapper."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.distributions import Normal, TanhTransform, TransformedDistribution

from data.dmc import DMCEnv, split_task
from runners.off_policy.networks import TanhGaussianActor, TwinCritic
from runners.off_policy.replay import ReplayBuffer


def test_twin_critic_members_are_two_independent_mlps() -> None:
    torch.manual_seed(0)
    critic = TwinCritic(obs_dim=3, act_dim=2, hidden_dims=[8, 8])
    obs, act = torch.randn(5, 3), torch.randn(5, 2)
    q = critic(obs, act)
    assert q.shape == (2, 5)
    for j in range(2):
        x = torch.cat([obs, act], -1)
        for i, layer in enumerate(critic.layers):
            x = x @ layer.weight[j] + layer.bias[j]
            x = torch.relu(x) if i < len(critic.layers) - 1 else x
        torch.testing.assert_close(q[j], x.squeeze(-1))
    assert not torch.allclose(q[0], q[1])


def test_ensemble_init_is_orthogonal() -> None:
    critic = TwinCritic(obs_dim=4, act_dim=4, hidden_dims=[8])
    w = critic.layers[0].weight[1]  # [in=8, out=8]
    torch.testing.assert_close(w.T @ w, torch.eye(8), atol=1e-5, rtol=0)
    assert torch.count_nonzero(critic.layers[0].bias) == 0


def test_actor_log_prob_matches_torch_tanh_normal() -> None:
    torch.manual_seed(0)
    actor = TanhGaussianActor(obs_dim=3, act_dim=2, hidden_dims=[16], log_std_min=-10, log_std_max=2)
    obs = torch.randn(64, 3)
    torch.manual_seed(1)
    action, logp = actor.sample(obs)
    mu, log_std = actor(obs)
    reference = TransformedDistribution(Normal(mu, log_std.exp()), [TanhTransform(cache_size=1)])
    u = torch.atanh(action.clamp(-1 + 1e-6, 1 - 1e-6))
    expected = reference.log_prob(torch.tanh(u)).sum(-1)
    keep = action.abs().max(-1).values < 0.999  # atanh is ill-conditioned at the saturated ends
    torch.testing.assert_close(logp[keep], expected[keep], atol=2e-3, rtol=1e-4)
    assert action.abs().max() <= 1.0
    assert ((log_std >= -10) & (log_std <= 2)).all()


def test_replay_buffer_round_trip_keeps_contents_and_sampling_stream() -> None:
    buf = ReplayBuffer(100, obs_dim=3, act_dim=1, rng=np.random.default_rng(0))
    for i in range(30):
        buf.add(
            np.full(3, i, np.float32),
            np.full(1, -i, np.float32),
            float(i),
            np.full(3, i + 1, np.float32),
            i == 7,
        )
    state = buf.state_dict()
    clone = ReplayBuffer(100, obs_dim=3, act_dim=1, rng=np.random.default_rng(123))
    clone.load_state_dict(state)
    for a, b in zip(buf.sample(16, torch.device("cpu")), clone.sample(16, torch.device("cpu")), strict=True):
        torch.testing.assert_close(a, b)
    obs, act, _, next_obs, not_done = buf.sample(256, torch.device("cpu"))
    torch.testing.assert_close(next_obs, obs + 1)  # transitions stay aligned
    torch.testing.assert_close(act[:, 0], -obs[:, 0])
    assert (not_done[obs[:, 0] == 7] == 0).all() and (not_done[obs[:, 0] != 7] == 1).all()


def test_replay_buffer_wraps_around() -> None:
    buf = ReplayBuffer(4, obs_dim=1, act_dim=1, rng=np.random.default_rng(0))
    for i in range(6):
        buf.add(np.array([i], np.float32), np.zeros(1, np.float32), 0.0, np.zeros(1, np.float32), False)
    assert buf.size == 4 and sorted(buf.obs[:, 0].tolist()) == [2.0, 3.0, 4.0, 5.0]


def test_dmc_flat_observations_and_action_repeat() -> None:
    single, repeated = DMCEnv("cartpole_swingup", 1, seed=3), DMCEnv("cartpole_swingup", 2, seed=3)
    assert (single.obs_dim, single.act_dim) == (5, 1)
    o1, o2 = single.reset(), repeated.reset()
    np.testing.assert_array_equal(o1, o2)
    action = np.array([0.7], np.float32)
    obs_a, reward_a, _, _ = single.step(action)
    obs_b, reward_b, _, _ = single.step(action)
    obs_r, reward_r, terminal, truncated = repeated.step(action)
    np.testing.assert_allclose(obs_r, obs_b)  # one repeated step lands where two single steps do
    assert not np.allclose(obs_a, obs_b)
    assert reward_r == pytest.approx(reward_a + reward_b) and not terminal and not truncated


def test_dmc_episode_is_truncated_by_the_time_limit() -> None:
    env = DMCEnv("cartpole_swingup", 4, seed=0)
    env.reset()
    steps, truncated = 0, False
    while not truncated:
        _, _, terminal, truncated = env.step(np.zeros(1, np.float32))
        steps += 1
        assert not terminal
    assert steps == 1000 // 4


def test_dmc_names_tasks_with_underscores() -> None:
    assert split_task("ball_in_cup_catch") == ("ball_in_cup", "catch")
    assert split_task("cartpole_swingup_sparse") == ("cartpole", "swingup_sparse")
    with pytest.raises(ValueError, match=r"env.task='walker_fly'.*walker_walk"):
        split_task("walker_fly")
