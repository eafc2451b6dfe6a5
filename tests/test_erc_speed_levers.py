"""Issue 17's speed levers in the off-policy hot path give the plain path's results: oneDNN's GEMM for the
MLPs (to float32 round-off), Fabric's wrappers bypassed on one fp32 device (the same kernels, compared to
1e-6), the actor's log-density from the drawn noise (to round-off)."""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
import torch.nn.functional as F
from lightning.fabric import Fabric

from methods.erc import agent as erc_agent
from methods.erc.agent import SACAgent
from methods.erc.config import ERCConfig
from methods.td3.agent import TD3Agent
from methods.td3.config import TD3Config
from runners.off_policy import fused_adam_step, plain_fabric
from runners.off_policy.fused_adam_step import adam_step
from runners.off_policy.networks import DeterministicActor, TanhGaussianActor, TwinCritic
from runners.off_policy.onednn_mlp import MIN_ROWS, onednn_applies

pytestmark = pytest.mark.skipif(not onednn_applies(torch.zeros(256, 4)), reason="torch built without oneDNN")


@contextmanager
def plain_gemm() -> Iterator[None]:
    """The reference path: torch's own layers (baddbmm, nn.Linear), oneDNN switched off."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.backends.mkldnn, "enabled", False)
        yield


def grads(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.grad.clone() for p in module.parameters()]


def batch(n: int, obs_dim: int, act_dim: int, seed: int = 1) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(n, obs_dim, generator=g),
        torch.rand(n, act_dim, generator=g) * 2 - 1,
        torch.randn(n, generator=g),
        torch.randn(n, obs_dim, generator=g),
        (torch.arange(n) % 7 != 0).float(),
    )


def test_twin_critic_on_onednn_matches_the_baddbmm_path_values_and_gradients() -> None:
    torch.manual_seed(0)
    critic = TwinCritic(obs_dim=5, act_dim=3, hidden_dims=[64, 32])
    obs, act, y = torch.randn(40, 5), torch.randn(40, 3, requires_grad=True), torch.randn(40)

    def loss_and_grads() -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor, str]:
        critic.zero_grad(set_to_none=True)
        act.grad = None
        q = critic(obs, act)
        (q - y).pow(2).mean(-1).sum().backward()
        return q.detach(), grads(critic), act.grad.clone(), type(q.grad_fn).__name__

    q, g, g_act, node = loss_and_grads()
    with plain_gemm():
        q_ref, g_ref, g_act_ref, node_ref = loss_and_grads()
    assert (node, node_ref) == ("SqueezeBackward1", "SqueezeBackward1")
    assert (
        q.shape == (2, 40) and critic(obs, act).grad_fn.next_functions[0][0].name() == "EnsembleMLPBackward"
    )
    torch.testing.assert_close(q, q_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(g_act, g_act_ref, rtol=1e-4, atol=1e-6)
    for a, b in zip(g, g_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_frozen_critic_gives_action_gradients_only() -> None:
    """The actor loss freezes the critic: no weight gradients are computed, ∂Q/∂a still is."""
    torch.manual_seed(0)
    critic = TwinCritic(obs_dim=4, act_dim=2, hidden_dims=[16, 16]).requires_grad_(False)
    obs, act = torch.randn(64, 4), torch.randn(64, 2, requires_grad=True)
    critic(obs, act).min(0).values.sum().backward()
    assert all(p.grad is None for p in critic.parameters())
    g = act.grad.clone()
    act.grad = None
    with plain_gemm():
        critic(obs, act).min(0).values.sum().backward()
    torch.testing.assert_close(g, act.grad, rtol=1e-4, atol=1e-6)


def test_onednn_takes_batches_and_leaves_single_observations_to_mkl() -> None:
    assert onednn_applies(torch.zeros(256, 6)) and onednn_applies(torch.zeros(MIN_ROWS, 6))
    assert not onednn_applies(torch.zeros(1, 6))  # act(): one observation
    assert not onednn_applies(torch.zeros(2, 256, 6))  # not a [rows, in] matrix
    assert not onednn_applies(torch.zeros(256, 6, dtype=torch.float64))
    with plain_gemm():
        assert not onednn_applies(torch.zeros(256, 6))


def test_actor_mlp_on_onednn_matches_nn_linear() -> None:
    torch.manual_seed(0)
    actor = DeterministicActor(obs_dim=6, act_dim=3, hidden_dims=[32, 32])
    obs = torch.randn(50, 6)
    out = actor(obs)
    out.square().sum().backward()
    g = grads(actor)
    actor.zero_grad(set_to_none=True)
    with plain_gemm():
        ref = actor(obs)
        ref.square().sum().backward()
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    for a, b in zip(g, grads(actor), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_log_density_from_the_drawn_noise_is_the_gaussian_of_u() -> None:
    """−½ε² − log σ − ½ log 2π equals log N(u; μ, σ) with u = μ + σε; same draws, same gradients."""
    torch.manual_seed(0)
    actor = TanhGaussianActor(obs_dim=3, act_dim=2, hidden_dims=[16], log_std_min=-5, log_std_max=2)
    obs = torch.randn(64, 3)
    torch.manual_seed(7)
    action, logp = actor.sample(obs)
    logp.sum().backward()
    g = grads(actor)
    actor.zero_grad(set_to_none=True)

    torch.manual_seed(7)  # the previous formula, (u − μ)/σ recomputed, on the same noise
    mu, log_std = actor(obs)
    u = mu + log_std.exp() * torch.randn_like(mu)
    gaussian = -0.5 * ((u - mu) / log_std.exp()).pow(2) - log_std - 0.5 * math.log(2 * math.pi)
    ref = (gaussian - 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))).sum(-1)
    ref.sum().backward()
    torch.testing.assert_close(action, torch.tanh(u))
    torch.testing.assert_close(logp, ref, rtol=1e-5, atol=1e-5)
    for a, b in zip(g, grads(actor), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_fabric_wrappers_are_bypassed_only_where_they_are_the_identity() -> None:
    fabric = Fabric(accelerator="cpu", devices=1)
    module, opt = fabric.setup(torch.nn.Linear(2, 2), torch.optim.SGD([torch.nn.Parameter(torch.ones(1))]))
    assert plain_fabric.wrappers_are_identity(fabric)
    assert plain_fabric.bare(fabric, module) is module.module
    assert plain_fabric.bare(fabric, opt) is opt.optimizer
    assert plain_fabric.backward_fn(fabric) is torch.Tensor.backward
    half = Fabric(accelerator="cpu", devices=1, precision="bf16-mixed")
    module, opt = half.setup(torch.nn.Linear(2, 2), torch.optim.SGD([torch.nn.Parameter(torch.ones(1))]))
    assert not plain_fabric.wrappers_are_identity(half)
    assert plain_fabric.bare(half, module) is module and plain_fabric.bare(half, opt) is opt
    assert plain_fabric.backward_fn(half) == half.backward


def run_sac(updates: int, **overrides) -> tuple[SACAgent, list[float]]:
    cfg = ERCConfig(_target_="x", name="sac", policy_every=1, batch_size=64, **overrides)
    torch.manual_seed(0)
    agent = SACAgent(4, 2, [32, 32], cfg, Fabric(accelerator="cpu", devices=1))
    torch.manual_seed(3)
    losses = [agent.update(batch(64, 4, 2, seed=i))["critic/td_loss"].item() for i in range(updates)]
    return agent, losses


def state(agent: SACAgent | TD3Agent) -> list[torch.Tensor]:
    return [t for m in (agent.actor, agent.critic, agent.critic_target) for t in m.state_dict().values()]


def test_sac_without_fabric_wrappers_matches_the_wrapped_agent(monkeypatch: pytest.MonkeyPatch) -> None:
    fast, fast_losses = run_sac(6, beta=0.01)
    assert fast._critic is fast.critic.module and fast._backward is torch.Tensor.backward
    monkeypatch.setattr(erc_agent, "bare", lambda fabric, wrapped: wrapped)
    monkeypatch.setattr(erc_agent, "backward_fn", lambda fabric: fabric.backward)
    wrapped, wrapped_losses = run_sac(6, beta=0.01)
    assert wrapped._critic is wrapped.critic
    assert fast_losses == pytest.approx(wrapped_losses, rel=1e-6, abs=1e-7)
    for a, b in zip(state(fast), state(wrapped), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    assert fast.alpha_opt.state_dict()["state"][0]["step"] == 6


def test_sac_curve_on_onednn_matches_the_plain_path() -> None:
    """A short training curve (20 updates, ERC's penalty on) agrees to round-off with the plain layers."""
    fast, fast_losses = run_sac(20, beta=0.01)
    with plain_gemm():
        plain, plain_losses = run_sac(20, beta=0.01)
    assert fast_losses == pytest.approx(plain_losses, rel=1e-4)
    for a, b in zip(state(fast), state(plain), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_td3_update_on_onednn_matches_the_plain_path() -> None:
    def run() -> tuple[TD3Agent, list[float]]:
        torch.manual_seed(0)
        agent = TD3Agent(4, 2, [32, 32], TD3Config(), Fabric(accelerator="cpu", devices=1))
        torch.manual_seed(3)
        return agent, [agent.update(batch(64, 4, 2, seed=i))["critic/td_loss"].item() for i in range(6)]

    fast, fast_losses = run()
    with plain_gemm():
        plain, plain_losses = run()
    assert fast_losses == pytest.approx(plain_losses, rel=1e-4)
    for a, b in zip(state(fast), state(plain), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_state_dict_keys_are_unchanged_by_the_levers() -> None:
    """Checkpoints written before the levers still load: same modules, same parameter names and shapes."""
    agent, _ = run_sac(1)
    critic = agent.critic.state_dict()
    assert {k: tuple(v.shape) for k, v in critic.items()} == {
        "layers.0.weight": (2, 6, 32),
        "layers.0.bias": (2, 1, 32),
        "layers.1.weight": (2, 32, 32),
        "layers.1.bias": (2, 1, 32),
        "layers.2.weight": (2, 32, 1),
        "layers.2.bias": (2, 1, 1),
    }
    clone = copy.deepcopy(agent.state_dict())
    agent.load_state_dict(clone)
    assert set(agent.state_dict()) == set(clone)


def test_direct_fused_adam_step_matches_optimizer_step() -> None:
    torch.manual_seed(0)
    nets = [
        torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 2)) for _ in range(2)
    ]
    nets[1].load_state_dict(nets[0].state_dict())
    opts = [torch.optim.Adam(n.parameters(), lr=3e-3, betas=(0.8, 0.95), eps=1e-6, fused=True) for n in nets]
    for i in range(5):
        x = torch.randn(16, 5)
        for net, opt in zip(nets, opts, strict=True):
            opt.zero_grad(set_to_none=True)
            net(x).pow(2).sum().backward()
        opts[0].step()
        adam_step(opts[1])  # the first call falls back to step(), which makes the state
        for a, b in zip(nets[0].parameters(), nets[1].parameters(), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, msg=f"step {i}")
    sa, sb = opts[0].state_dict()["state"], opts[1].state_dict()["state"]
    for k in sa:
        for f in ("step", "exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(sa[k][f], sb[k][f], rtol=1e-6, atol=1e-7)
    assert sb[0]["step"].item() == 5


def test_direct_adam_step_falls_back_where_step_does_more() -> None:
    p = torch.nn.Parameter(torch.ones(3))
    q = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.Adam([p, q], lr=0.1, fused=True)
    p.grad = torch.ones(3)
    adam_step(opt)  # q has no gradient: step() skips it, and so does the fallback
    assert q not in opt.state and opt.state[p]["step"].item() == 1
    assert not fused_adam_step._direct(opt)
    wrapped = Fabric(accelerator="cpu", devices=1).setup_optimizers(torch.optim.Adam([q], fused=True))
    assert not fused_adam_step._direct(wrapped)
