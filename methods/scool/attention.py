"""The attention prior (paper eqs. 25–31; the official SCooL_ATTENTION.py with
models/resnet.py, Attention_layerwise_model_update_multilayer_mask, the scripts' `layerwise` arch).

π_ij = softmax_j f(θ_i, θ_j) (eq. 25), f the inner product of encodings of the cumulative updates
θ_i^{t+½} − θ^0 (eq. 26). As the official encoder: each parameter tensor l of the device model, viewed as
F_l rows (filters) of length d_l, goes row by row through its own MLP Linear(d_l, h1) → tanh →
Linear(h1, h2) → tanh; f is the mean over tensors of (1/F_l) Σ_f ⟨E_l(u_i,l,f), E_l(u_j,l,f)⟩, on updates
normalised by their norm over the whole model (normalize_model_update_group). E-step (eq. 29):
w_i = softmax_j(−L_ij / scale + log π_ij) = ŵ_i ⊙ π_i renormalised, ŵ_i = softmax_j(−L_ij / scale), with
π from the encoders as they stand at the round's start (the official records π before its encoder step).
Then the encoders take their steps on −Σ_j target_ij log π_ij (eq. 31).

Paper and official differ (method.att_encoder picks; the paper is the default, the project's rule):
- paper: one encoder φ shared by all devices (eqs. 26, 31), output widths (10, 5) (App. C.1), Adam lr 0.1
  with weight decay 0.01 (C.1), target w (eq. 31's E-step posterior), update θ_i − θ^0 (eq. 26). C.1 does
  not say how the decay is applied; we decouple it, as the official AdamW does. Coupled (L2 in Adam's
  gradient) it dominates the encoder's small loss gradient on model-sized updates, Adam's normalisation
  turns it into steps of ~lr towards zero, and π goes uniform (digits non-IID, seed 0: 76.7 % against
  94.6 % decoupled);
- official: one encoder per device (mixing_net_group), widths (10, 20), AdamW lr 0.2 (--mixing_lr),
  betas (0.9, 0.99), weight decay 0.01 (AdamW's default; --mixing_weight_decay is never passed to it),
  target ŵ (mixing_weight_group_obj), update θ^0 − θ_i (get_two_model_params_subtract(model_init,
  model)), and after each round every device's encoder replaced by the mean over devices (sync_allreduce1,
  which runs for every arch but gcn). The paper says nothing of per-row encoding or normalisation, so
  both modes take the official's.
Once the graph is sparsified, π, ŵ and the encoder loss run over the kept neighbours only (preprocess's
mixing_weight_mask).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from methods.scool.shard import DeviceShard


def rows_of(shape: Sequence[int]) -> tuple[int, int]:
    """A parameter of `shape` as (rows, row length): param.view(size(0), -1); a bias is (size, 1)."""
    return int(shape[0]), int(math.prod(shape[1:]))


class UpdateEncoders(nn.Module):
    """`count` encoders (1: the paper's shared φ; the number of devices: the official's one per device),
    stacked on a leading axis, all starting from one initialisation (the official sync_init1 broadcasts
    rank 0's). Per parameter tensor l: Linear(d_l, dims[0]) → tanh → Linear(dims[0], dims[1]) → tanh."""

    def __init__(self, shapes: dict[str, Sequence[int]], dims: Sequence[int], count: int) -> None:
        super().__init__()
        self.names, self.count = list(shapes), count
        self.weights, self.biases = nn.ParameterList(), nn.ParameterList()
        for shape in shapes.values():
            width = rows_of(shape)[1]
            for out in dims:
                layer = nn.Linear(width, out)  # PyTorch's default initialisation, as the official's
                self.weights.append(nn.Parameter(layer.weight.detach().expand(count, -1, -1).clone()))
                self.biases.append(nn.Parameter(layer.bias.detach().expand(count, -1).clone()))
                width = out
        self.depth = len(dims)

    def encode(self, layer: int, u: torch.Tensor) -> torch.Tensor:
        """u (n, F, d): the rows of tensor `layer` of every device -> (count, n, F, h), each encoder's."""
        ws = self.weights[layer * self.depth : (layer + 1) * self.depth]
        bs = self.biases[layer * self.depth : (layer + 1) * self.depth]
        x = torch.tanh(torch.einsum("eoi,nfi->enfo", ws[0], u) + bs[0][:, None, None, :])
        for w, b in zip(ws[1:], bs[1:], strict=True):
            x = torch.tanh(torch.einsum("epo,enfo->enfp", w, x) + b[:, None, None, :])
        return x

    def logits(self, updates: dict[str, torch.Tensor], rows: torch.Tensor) -> torch.Tensor:
        """f(θ_i, θ_j) for devices i = `rows` (k,) and every j: (k, n). With one encoder per device,
        `rows` are also the indices of the encoders in this module (k = count)."""
        n = next(iter(updates.values())).shape[0]
        flat = {k: v.reshape(n, *rows_of(v.shape[1:])) for k, v in updates.items()}
        norm = torch.sqrt(sum(v.pow(2).sum((1, 2)) for v in flat.values())) + 1e-10
        total = 0
        for layer, name in enumerate(self.names):
            u = flat[name] / norm[:, None, None]
            e = self.encode(layer, u)  # (count, n, F, h)
            if self.count == 1:
                e = e[0]
                total = total + torch.einsum("ifh,jfh->ij", e[rows], e) / u.shape[1]
            else:
                own = e[torch.arange(self.count, device=e.device), rows]  # (k, F, h): encoder i on u_i
                total = total + torch.einsum("kfh,kjfh->kj", own, e) / u.shape[1]
        return total / len(self.names)


def loss_weights(cross_loss: torch.Tensor, scale: float) -> torch.Tensor:
    """ŵ_i = softmax_j(−L_ij / scale) (eq. 29's likelihood term, the official optimize_W)."""
    return torch.softmax(-cross_loss / scale, dim=1)


def masked_log_softmax(logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """log softmax over the kept neighbours (mask 1); −inf elsewhere."""
    if mask is not None:
        logits = logits.masked_fill(mask == 0, float("-inf"))
    return torch.log_softmax(logits, dim=1)


@dataclass
class AttentionRound:
    w: torch.Tensor  # (k, n) this round's mixing weights of the rows' devices (eq. 29)
    pi: torch.Tensor  # (k, n) π at the round's start, the one w is made of
    loss: float  # the encoder loss summed over all devices' rows, at the last step


def make_optimizer(
    enc: UpdateEncoders, official: bool, lr: float, weight_decay: float
) -> torch.optim.Optimizer:
    """Paper C.1: Adam with weight decay, decoupled (see the module docstring), Adam's default betas.
    Official: AdamW(betas (0.9, 0.99)). Both act element by element, so one optimiser over the stacked
    encoders is one optimiser per device."""
    betas = (0.9, 0.99) if official else (0.9, 0.999)
    return torch.optim.AdamW(enc.parameters(), lr=lr, betas=betas, weight_decay=weight_decay)


def attention_round(
    enc: UpdateEncoders,
    opt: torch.optim.Optimizer,
    updates: dict[str, torch.Tensor],
    cross_rows: torch.Tensor,
    rows: torch.Tensor,
    scale: float,
    steps: int,
    official: bool,
    mask_rows: torch.Tensor | None = None,
    shard: DeviceShard | None = None,
) -> AttentionRound:
    """One round for devices `rows` (this rank's): π from the encoders' round-start state, w = ŵ ⊙ π
    renormalised (eq. 29), then `steps` optimiser steps on −Σ_ij target_ij log π_ij (eq. 31; target w in
    the paper, ŵ in the official code). `cross_rows` (k, n): L_ij of the rows; `updates` (n, ...): every
    device's cumulative update. A shared encoder's gradient is summed over ranks (one φ, one loss over all
    i); a per-device encoder's gradient comes from its own row only."""
    shard = shard or DeviceShard(n=cross_rows.shape[1])
    updates = {k: v.detach() for k, v in updates.items()}
    keep = torch.ones_like(cross_rows) if mask_rows is None else mask_rows
    # π at the round's start is also step 0's: one encoder pass serves both
    log_pi = masked_log_softmax(enc.logits(updates, rows), mask_rows)
    with torch.no_grad():
        log_lik = masked_log_softmax(-cross_rows / scale, mask_rows)  # log ŵ over the kept neighbours
        pi = log_pi.detach().exp()
        w = log_lik.exp() * pi
        w = w / w.sum(1, keepdim=True)
        target = log_lik.exp() if official else w
    loss = torch.zeros(())
    for step in range(steps):
        if step > 0:
            log_pi = masked_log_softmax(enc.logits(updates, rows), mask_rows)
        loss = -torch.where(keep > 0, target * log_pi, torch.zeros_like(log_pi)).sum()
        opt.zero_grad()
        loss.backward()
        if enc.count == 1:  # one φ: the gradient of Σ over all devices' rows
            for p in enc.parameters():
                p.grad = shard.all_sum(p.grad)
        opt.step()
    total = float(shard.all_sum(loss.detach().reshape(1))[0])
    return AttentionRound(w=w, pi=pi, loss=total)


@torch.no_grad()
def average_encoders(enc: UpdateEncoders, shard: DeviceShard) -> None:
    """The official sync_allreduce1: every device's encoder ← the mean over all n devices' encoders."""
    for p in enc.parameters():
        mean = shard.all_sum(p.sum(0, keepdim=True)) / shard.n
        p.copy_(mean.expand_as(p))
