"""All devices' models as one set of stacked parameters, run with torch.func (functional_call + vmap).

A device's model is an ordinary nn.Module; the n devices' weights are its parameters stacked on a leading
axis. One forward/backward over the stacked weights trains every device at once: the devices' losses are
summed, and since device i's loss depends only on slice i, the gradient of the sum is each device's own
gradient. `LoopedDevices` is the same computation as a Python loop over n modules (bench baseline).
"""

from __future__ import annotations

import copy
import itertools

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap


def make_model(kind: str, in_shape: tuple[int, ...], num_classes: int, hidden: list[int]) -> nn.Module:
    """`mlp` on flattened inputs, or `cnn`: the two-layer CNN of the paper (5×5 convs with 32 and 64
    channels, 2×2 max-pooling, a 512-unit layer; McMahan et al. 2017's CIFAR model)."""
    if kind == "mlp":
        dims = [int(torch.tensor(in_shape).prod()), *hidden]
        layers: list[nn.Module] = [nn.Flatten()]
        for a, b in itertools.pairwise(dims):
            layers += [nn.Linear(a, b), nn.ReLU()]
        return nn.Sequential(*layers, nn.Linear(dims[-1], num_classes))
    ch, h, w = in_shape
    side = lambda s: ((s - 4) // 2 - 4) // 2  # noqa: E731  two (5×5 valid conv, 2×2 pool) stages
    if min(side(h), side(w)) < 1:
        raise ValueError(f"method.model=cnn needs images of at least 16×16 (CIFAR-sized), got {h}×{w}")
    return nn.Sequential(
        nn.Conv2d(ch, 32, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * side(h) * side(w), 512),
        nn.ReLU(),
        nn.Linear(512, num_classes),
    )


class BatchedDevices:
    """n copies of `model` (the same initialisation) trained together by plain SGD with weight decay."""

    def __init__(self, model: nn.Module, n: int) -> None:
        self.base = copy.deepcopy(model).to("meta")
        params, _ = stack_module_state([model] * n)
        self.params = {k: v.detach().clone().requires_grad_() for k, v in params.items()}
        self.n = n
        # An MLP runs as batched matrix products (baddbmm): torch.func's batching rule for the backward of
        # F.linear is several times slower on CPU. Any other model (the CNN) runs through vmap.
        self.mlp = all(isinstance(m, nn.Flatten | nn.Linear | nn.ReLU) for m in model)
        self._fwd = vmap(self._one, in_dims=(0, 0))
        self._fwd_all = vmap(self._one, in_dims=(0, None))

    def _one(self, p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.base, p, (x,))

    def _mlp(self, p: dict[str, torch.Tensor], x: torch.Tensor, shared: bool = False) -> torch.Tensor:
        """x (n, B, ...) one batch per device, or with `shared` (B, ...) for every device -> (n, B, C)."""
        x = x.flatten(1) if shared else x.flatten(2)
        for i, layer in enumerate(self.base):
            if isinstance(layer, nn.Linear):
                w, b = p[f"{i}.weight"].transpose(1, 2), p[f"{i}.bias"][:, None, :]
                x = torch.baddbmm(b, x, w) if x.dim() == 3 else torch.matmul(x, w) + b
            elif isinstance(layer, nn.ReLU):
                x = torch.relu(x)
        return x

    def logits(self, x: torch.Tensor, params: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """(n, B, ...) inputs, one batch per device -> (n, B, C)."""
        params = self.params if params is None else params
        return self._mlp(params, x) if self.mlp else self._fwd(params, x)

    def sgd_step(self, x: torch.Tensor, y: torch.Tensor, lr: float, weight_decay: float) -> float:
        """One SGD step of every device on its own batch: x (n, B, ...), y (n, B)."""
        logits = self.logits(x)
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(self.n, -1).mean(1)
        loss.sum().backward()  # into persistent .grad buffers: no large allocation per step
        with torch.no_grad():
            for p in self.params.values():
                p.mul_(1 - lr * weight_decay).add_(p.grad, alpha=-lr)  # θ ← θ − lr (∇L + λθ), in place
                p.grad.zero_()
        return loss.mean().item()

    @torch.no_grad()
    def cross_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """L_ij = mean CE of model i on device j's batch: x (m, B, ...), y (m, B) -> (n, m), the n models
        here (one rank's share, methods/scool/shard.py) on the batches of all m devices."""
        m, b = y.shape
        shared = x.flatten(0, 1)  # every device's batch, shown to every model
        logits = (
            self._mlp(self.params, shared, shared=True) if self.mlp else self._fwd_all(self.params, shared)
        )
        ce = F.cross_entropy(logits.flatten(0, 1), y.flatten().repeat(self.n), reduction="none")
        return ce.view(self.n, m, b).mean(-1)

    def flat(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.params.items()}

    @torch.no_grad()
    def load(self, params: dict[str, torch.Tensor]) -> None:
        for k, v in params.items():
            self.params[k].copy_(v)

    @torch.no_grad()
    def mix(self, w: torch.Tensor, source: dict[str, torch.Tensor] | None = None) -> None:
        """θ_i ← Σ_j w_ij θ_j (of `source`, default the current parameters): w (n, m), source (m, ...)."""
        source = source or self.flat()
        for k, v in source.items():
            self.params[k].copy_(torch.einsum("ij,j...->i...", w, v))


class LoopedDevices:
    """The same devices as n separate modules and optimisers, trained one after another (the baseline)."""

    def __init__(self, model: nn.Module, n: int) -> None:
        self.models = [copy.deepcopy(model) for _ in range(n)]

    def sgd_step(self, x: torch.Tensor, y: torch.Tensor, lr: float, weight_decay: float) -> float:
        total = 0.0
        for m, xi, yi in zip(self.models, x, y, strict=True):
            loss = F.cross_entropy(m(xi), yi)
            loss.backward()
            with torch.no_grad():
                for p in m.parameters():
                    p.mul_(1 - lr * weight_decay).add_(p.grad, alpha=-lr)
                    p.grad.zero_()
            total += loss.item()
        return total / len(self.models)

    @torch.no_grad()
    def cross_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.stack(
            [
                torch.stack([F.cross_entropy(m(xj), yj) for xj, yj in zip(x, y, strict=True)])
                for m in self.models
            ]
        )

    @torch.no_grad()
    def mix(self, w: torch.Tensor) -> None:
        states = [[p.detach().clone() for p in m.parameters()] for m in self.models]
        for i, m in enumerate(self.models):
            for k, p in enumerate(m.parameters()):
                p.copy_(sum(w[i, j] * states[j][k] for j in range(len(self.models))))
