"""The paper's deep setting: the pretrained backbone and a linear head trained together on the images,
from the pretrained weights again every fit (ColdStartAL's ``--ftall``: active_sampler_ft.py rebuilds
``get_backbone_model`` each round and trains all of it).

The network is used functionally (``torch.func.functional_call`` over the backbone's parameters) so that
the same ``learner.fit`` — and the meta-λ baseline's differentiable inner step — run on it unchanged.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call

from methods.chain.learner import Params, head, init_params


class FinetuneNet:
    """[backbone parameters..., W, b]: the backbone's pretrained values, then a random linear head."""

    def __init__(self, encoder: nn.Module, out_dim: int, num_classes: int) -> None:
        self.encoder = encoder
        self.names = [n for n, _ in encoder.named_parameters()]
        self.pretrained = [p.detach().clone() for p in encoder.parameters()]
        for p in encoder.parameters():
            p.requires_grad_(False)  # only the functional copies are trained
        self.buffers0 = self.snapshot()
        self.dims = [out_dim, num_classes]

    def init(self, gen: torch.Generator, device: torch.device | str) -> Params:
        """The pretrained weights (and batch-norm statistics) again, and a fresh head."""
        self.restore(self.buffers0)
        backbone = [p.to(device).clone().requires_grad_() for p in self.pretrained]
        return backbone + init_params(self.dims, gen, device)

    def embed(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        weights = dict(zip(self.names, params[: len(self.names)], strict=True))
        return functional_call(self.encoder, weights, (x,))

    def forward(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        return head(params, self.embed(params, x))

    def train(self, mode: bool) -> None:
        self.encoder.train(mode)

    def snapshot(self) -> dict[str, torch.Tensor]:
        """Batch-norm running statistics (and other buffers), which the kept parameters go with."""
        return {n: b.detach().clone() for n, b in self.encoder.named_buffers()}

    def restore(self, state: object) -> None:
        if isinstance(state, dict):
            with torch.no_grad():
                for n, b in self.encoder.named_buffers():
                    b.copy_(state[n])
