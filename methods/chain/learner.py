"""The learners on fixed features: multinomial logistic regression and a small MLP, as plain parameter
lists with a functional forward, so the meta-λ baseline can differentiate through an inner step."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from methods.chain.firth import firth_loss

Params = list[torch.Tensor]


def init_params(dims: list[int], gen: torch.Generator, device: torch.device | str = "cpu") -> Params:
    """[W1, b1, W2, b2, ...] for layer widths ``dims`` (input, hidden..., classes); Kaiming-uniform."""
    params = []
    for fan_in, fan_out in itertools.pairwise(dims):
        bound = 1.0 / fan_in**0.5
        w = (torch.rand(fan_in, fan_out, generator=gen) * 2 - 1) * bound
        params += [w.to(device), torch.zeros(fan_out, device=device)]
    return [p.requires_grad_() for p in params]


def embed(params: Params, x: torch.Tensor) -> torch.Tensor:
    """Input of the last (linear) layer: the features themselves for the linear model."""
    for i in range(0, len(params) - 2, 2):
        x = F.relu(x @ params[i] + params[i + 1])
    return x


def forward(params: Params, x: torch.Tensor) -> torch.Tensor:
    return embed(params, x) @ params[-2] + params[-1]


@dataclass
class Fit:
    """The kept parameters (best validation CE), their validation CE, the steps taken, λ at the last step
    and λ at the step whose update gave the kept parameters."""

    params: Params
    val_ce: float
    steps: int
    lam_last: float
    lam_kept: float = 0.0


def _val_ce(params: Params, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return F.cross_entropy(forward(params, x), y).item()


def fit(
    dims: list[int],
    x: torch.Tensor,
    y: torch.Tensor,
    xv: torch.Tensor,
    yv: torch.Tensor,
    gen: torch.Generator,
    steps: int,
    lr: float,
    weight_decay: float,
    eval_every: int,
    patience: int,
    lam_at: Callable[[int], float] | None = None,
    meta: MetaLambda | None = None,
    min_steps: int = 0,
) -> Fit:
    """Full-batch Adam on the Firth loss from a fresh initialisation, early-stopped on validation CE.

    λ comes from ``lam_at(step)`` or, for the meta baseline, from ``meta`` (updated at every step).
    ``min_steps``: validation checks, and so early stopping and the kept parameters, start at this step
    (CHAIN: when its curriculum has faded, so that the kept parameters were trained at λ's final value;
    schedule.py).
    """
    params = init_params(dims, gen, x.device)
    opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    best, best_ce, bad, lam, lam_kept = None, float("inf"), 0, 0.0, 0.0
    for step in range(steps):
        lam = meta.step(params, x, y, xv, yv) if meta is not None else lam_at(step)
        opt.zero_grad()
        firth_loss(forward(params, x), y, lam).backward()
        opt.step()
        if eval_every and (step + 1) % eval_every == 0 and step >= min_steps:
            ce = _val_ce(params, xv, yv)
            if ce < best_ce - 1e-6:
                best, best_ce, bad, lam_kept = copy.deepcopy([p.detach() for p in params]), ce, 0, lam
            else:
                bad += 1
                if bad >= patience:
                    break
    if best is None:
        best, best_ce, lam_kept = [p.detach() for p in params], _val_ce(params, xv, yv), lam
    return Fit(best, best_ce, step + 1, float(lam), float(lam_kept))


class MetaLambda:
    """Meta-learned λ (the ColdStartAL baseline): λ = softplus(ρ); each step takes one differentiable
    SGD step θ' = θ − η ∇θ L_λ(θ) on the labelled set and moves ρ by Adam on the validation CE of θ'."""

    def __init__(self, init: float, inner_lr: float, lr: float) -> None:
        rho0 = torch.log(torch.expm1(torch.tensor(max(init, 1e-6))))  # softplus⁻¹
        self.rho = rho0.clone().requires_grad_()
        self.inner_lr = inner_lr
        self.opt = torch.optim.Adam([self.rho], lr=lr)

    @property
    def lam(self) -> float:
        return F.softplus(self.rho).item()

    def step(
        self, params: Params, x: torch.Tensor, y: torch.Tensor, xv: torch.Tensor, yv: torch.Tensor
    ) -> float:
        lam = F.softplus(self.rho)
        grads = torch.autograd.grad(firth_loss(forward(params, x), y, lam), params, create_graph=True)
        inner = [p - self.inner_lr * g for p, g in zip(params, grads, strict=True)]
        self.opt.zero_grad()
        (g_rho,) = torch.autograd.grad(F.cross_entropy(forward(inner, xv), yv), [self.rho])
        self.rho.grad = g_rho
        self.opt.step()
        return self.lam

    def state_dict(self) -> dict:
        return {"rho": self.rho.detach().clone(), "opt": self.opt.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            self.rho.copy_(state["rho"])
        self.opt.load_state_dict(state["opt"])


@torch.no_grad()
def evaluate(params: Params, x: torch.Tensor, y: torch.Tensor, bins: int = 15) -> dict[str, float]:
    """Accuracy, NLL and expected calibration error (equal-width confidence bins, Guo et al. 2017)."""
    logp = F.log_softmax(forward(params, x), dim=-1)
    conf, pred = logp.exp().max(dim=-1)
    correct = (pred == y).float()
    edges = torch.linspace(0, 1, bins + 1, device=x.device)
    which = torch.bucketize(conf, edges[1:-1], right=True)
    ece = torch.zeros((), device=x.device)
    for b in range(bins):
        mask = which == b
        if mask.any():
            ece += mask.float().mean() * (conf[mask].mean() - correct[mask].mean()).abs()
    return {
        "accuracy": correct.mean().item(),
        "nll": -logp.gather(1, y[:, None]).mean().item(),
        "ece": ece.item(),
    }
