"""Off-policy actor-critic networks: twin critics evaluated as one batched ensemble, a tanh-Gaussian actor
(SAC, ERC) and a deterministic tanh actor (TD3).

The twin critics share no weights but run as a single ``baddbmm`` per layer (shape [2, batch, width]),
which halves the kernel launches of two separate MLPs. On the CPU in float32, for batches (not act()'s
single observation), every MLP here runs instead through runners.off_policy.onednn_mlp (oneDNN's GEMM,
forward and backward in one autograd node); the layer-by-layer path below is the reference it is tested
against and the path everywhere else.
Initialisation follows pytorch_sac: orthogonal weights, zero biases.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from runners.off_policy.onednn_mlp import ensemble_mlp, onednn_applies


def mlp(in_dim: int, hidden_dims: list[int], out_dim: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden_dims:
        layers += [nn.Linear(in_dim, width), nn.ReLU()]
        in_dim = width
    layers.append(nn.Linear(in_dim, out_dim))
    for layer in layers:
        if isinstance(layer, nn.Linear):
            nn.init.orthogonal_(layer.weight)
            nn.init.zeros_(layer.bias)
    return nn.Sequential(*layers)


def run_mlp(net: nn.Sequential, x: Tensor) -> Tensor:
    """``net(x)`` for an :func:`mlp`, on oneDNN's GEMM where it applies (x [batch, in] on the CPU)."""
    if not onednn_applies(x):
        return net(x)
    params = []
    for layer in net:
        if isinstance(layer, nn.Linear):  # [out, in] → a one-member ensemble's [1, in, out] view
            params += [layer.weight.t().unsqueeze(0), layer.bias.view(1, 1, -1)]
    return ensemble_mlp(x, params)[0]


class EnsembleLinear(nn.Module):
    """``members`` independent linear layers applied to a [members, batch, in] input at once."""

    def __init__(self, members: int, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(members, in_dim, out_dim))
        self.bias = nn.Parameter(torch.zeros(members, 1, out_dim))
        for w in self.weight:  # orthogonal per member, as nn.init does for an [out, in] matrix
            w.data.copy_(nn.init.orthogonal_(torch.empty(out_dim, in_dim)).T)

    def forward(self, x: Tensor) -> Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class TwinCritic(nn.Module):
    """Q_1, Q_2 (s, a) → tensor of shape [2, batch]."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_dims: list[int], members: int = 2) -> None:
        super().__init__()
        dims = [obs_dim + act_dim, *hidden_dims, 1]
        self.members = members
        self.layers = nn.ModuleList(EnsembleLinear(members, i, o) for i, o in itertools.pairwise(dims))

    def forward(self, obs: Tensor, act: Tensor) -> Tensor:
        x = torch.cat([obs, act], dim=-1)
        if onednn_applies(x):
            params = [p for layer in self.layers for p in (layer.weight, layer.bias)]
            return ensemble_mlp(x, params).squeeze(-1)
        x = x.expand(self.members, -1, -1)
        for layer in self.layers[:-1]:
            x = F.relu(layer(x))
        return self.layers[-1](x).squeeze(-1)


class TanhGaussianActor(nn.Module):
    """π(a|s) = tanh(N(μ(s), σ(s))); log σ squashed into [log_std_min, log_std_max] as in pytorch_sac."""

    def __init__(
        self, obs_dim: int, act_dim: int, hidden_dims: list[int], log_std_min: float, log_std_max: float
    ) -> None:
        super().__init__()
        self.net = mlp(obs_dim, hidden_dims, 2 * act_dim)
        self.log_std_min, self.log_std_max = log_std_min, log_std_max

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        mu, log_std = run_mlp(self.net, obs).chunk(2, dim=-1)
        log_std = self.log_std_min + 0.5 * (self.log_std_max - self.log_std_min) * (torch.tanh(log_std) + 1)
        return mu, log_std

    def sample(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """A reparameterised action and its log-probability (summed over action dimensions)."""
        mu, log_std = self(obs)
        eps = torch.randn_like(mu)
        u = mu + log_std.exp() * eps
        action = torch.tanh(u)
        # log N(u; μ, σ) with (u − μ)/σ = ε, the drawn noise: no second exp, subtraction or division
        gaussian = -0.5 * eps.square() - log_std - 0.5 * math.log(2 * math.pi)
        # log|d tanh(u)/du| = 2 (log 2 − u − softplus(−2u)), the numerically stable form
        log_det = 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))
        return action, (gaussian - log_det).sum(-1)

    def mean_action(self, obs: Tensor) -> Tensor:
        return torch.tanh(self(obs)[0])


class DeterministicActor(nn.Module):
    """μ(s) = tanh(MLP(s)): TD3's policy (Fujimoto et al. 2018), initialised as the critics are."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_dims: list[int]) -> None:
        super().__init__()
        self.net = mlp(obs_dim, hidden_dims, act_dim)

    def forward(self, obs: Tensor) -> Tensor:
        return torch.tanh(run_mlp(self.net, obs))
