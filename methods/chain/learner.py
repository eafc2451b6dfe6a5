"""The learners on fixed features: multinomial logistic regression and a small MLP, as plain parameter
lists with a functional forward, so the meta-λ baseline can differentiate through an inner step."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

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


def head(params: Params, emb: torch.Tensor) -> torch.Tensor:
    """Logits from last-layer inputs: every net here ends in the linear layer ``params[-2:]``."""
    return emb @ params[-2] + params[-1]


def forward(params: Params, x: torch.Tensor) -> torch.Tensor:
    return head(params, embed(params, x))


class FeatureNet:
    """The learner on fixed features (logistic regression, or an MLP): fresh random parameters each fit.
    The deep setting (methods/chain/finetune.py) has the same interface over a pretrained backbone."""

    def __init__(self, dims: list[int]) -> None:
        self.dims = list(dims)

    def init(self, gen: torch.Generator, device: torch.device | str) -> Params:
        return init_params(self.dims, gen, device)

    def forward(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        return forward(params, x)

    def embed(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        return embed(params, x)

    def train(self, mode: bool) -> None:
        """Train / eval mode (batch-norm statistics); nothing to switch here."""

    def snapshot(self) -> object:
        """State outside the parameters that the kept parameters need (batch-norm statistics): none."""
        return None

    def restore(self, state: object) -> None:
        pass


class Net(Protocol):
    """What ``fit`` needs of a learner: FeatureNet here, methods.chain.finetune.FinetuneNet."""

    def init(self, gen: torch.Generator, device: torch.device | str) -> Params: ...
    def forward(self, params: Params, x: torch.Tensor) -> torch.Tensor: ...
    def embed(self, params: Params, x: torch.Tensor) -> torch.Tensor: ...
    def train(self, mode: bool) -> None: ...
    def snapshot(self) -> object: ...
    def restore(self, state: object) -> None: ...


def as_net(net: Net | list[int]) -> Net:
    return FeatureNet(net) if isinstance(net, list | tuple) else net


@dataclass
class Fit:
    """The kept parameters (best validation CE), their validation CE, the steps taken, λ at the last step,
    λ at the step whose update gave the kept parameters, and the kept parameters' validation accuracy."""

    params: Params
    val_ce: float
    steps: int
    lam_last: float
    lam_kept: float = 0.0
    val_acc: float = 0.0
    # the network's state beside the kept parameters (FeatureNet: none; fine-tuning: batch-norm statistics)
    extra: object = None


@torch.no_grad()
def predict(
    net: Net, params: Params, x: torch.Tensor, chunk: int = 4096, embed: bool = False
) -> torch.Tensor:
    """Logits (or last-layer inputs) in eval mode, ``chunk`` rows at a time (a 50k pool of images)."""
    net.train(False)
    fn = net.embed if embed else net.forward
    return torch.cat([fn(params, part) for part in x.split(chunk)])


def _val_scores(net: Net, params: Params, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(CE, accuracy) on the validation split."""
    logits = predict(net, params, x)
    return F.cross_entropy(logits, y).item(), (logits.argmax(-1) == y).float().mean().item()


def fit(
    net: Net | list[int],
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
    optimizer: str = "adam",
) -> Fit:
    """Full-batch Adam (or SGD with momentum 0.9, ColdStartAL's fine-tuning optimiser) on the Firth loss
    from a fresh initialisation, early-stopped on validation CE. ``net``: a Net, or the layer widths of
    the learner on fixed features.

    λ comes from ``lam_at(step)`` or, for the meta baseline, from ``meta`` (updated at every step).
    ``min_steps``: validation checks, and so early stopping and the kept parameters, start at this step
    (CHAIN: when its curriculum has faded, so that the kept parameters were trained at λ's final value;
    schedule.py).
    """
    net = as_net(net)
    params = net.init(gen, x.device)
    if optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    else:
        opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    best, best_ce, bad, lam, lam_kept, extra = None, float("inf"), 0, 0.0, 0.0, None
    for step in range(steps):
        net.train(True)
        lam = meta.step(params, x, y, xv, yv, net.forward) if meta is not None else lam_at(step)
        opt.zero_grad()
        firth_loss(net.forward(params, x), y, lam).backward()
        opt.step()
        if eval_every and (step + 1) % eval_every == 0 and step >= min_steps:
            ce, _ = _val_scores(net, params, xv, yv)
            if ce < best_ce - 1e-6:
                best, best_ce, bad, lam_kept = copy.deepcopy([p.detach() for p in params]), ce, 0, lam
                extra = net.snapshot()
            else:
                bad += 1
                if bad >= patience:
                    break
    if best is None:
        best, lam_kept, extra = [p.detach() for p in params], lam, net.snapshot()
    net.restore(extra)
    best_ce, acc = _val_scores(net, best, xv, yv)
    return Fit(best, best_ce, step + 1, float(lam), float(lam_kept), acc, extra)


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
        self,
        params: Params,
        x: torch.Tensor,
        y: torch.Tensor,
        xv: torch.Tensor,
        yv: torch.Tensor,
        fwd: Callable[[Params, torch.Tensor], torch.Tensor] = forward,
    ) -> float:
        lam = F.softplus(self.rho)
        grads = torch.autograd.grad(firth_loss(fwd(params, x), y, lam), params, create_graph=True)
        inner = [p - self.inner_lr * g for p, g in zip(params, grads, strict=True)]
        self.opt.zero_grad()
        (g_rho,) = torch.autograd.grad(F.cross_entropy(fwd(inner, xv), yv), [self.rho])
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
def evaluate(
    params: Params, x: torch.Tensor, y: torch.Tensor, bins: int = 15, net: Net | None = None
) -> dict[str, float]:
    """Accuracy, NLL and expected calibration error (equal-width confidence bins, Guo et al. 2017)."""
    logits = predict(net, params, x) if net is not None else forward(params, x)
    logp = F.log_softmax(logits, dim=-1)
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
