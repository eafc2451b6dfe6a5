"""A ReLU MLP ensemble (forward and backward) on oneDNN's fp32 GEMM, for the CPU hot path of the
off-policy agents.

Why: torch's dense fp32 ``mm``/``bmm`` on the CPU call MKL, which on AMD CPUs takes its AVX2 code path;
oneDNN picks its kernels by the CPU's features (AVX-512 here). At the SAC update's shapes (batch 256,
256-wide layers, one thread) oneDNN's GEMM does the same product in about half the time
(bench/erc_gemm.py measures both, and XLA's). torch exposes oneDNN's fp32 matmul only as the
inference op ``torch.ops.mkldnn._linear_pointwise`` (no autograd), so :class:`EnsembleMLP` writes the
backward by hand: the same three GEMMs autograd would run (ReLU' mask, grad input, grad weight).

The math is the plain path's (``baddbmm``/``relu`` layer by layer); only the GEMM's summation order
differs, so results agree to float32 round-off, not bitwise (tests/test_erc_speed_levers.py). The plain
path runs wherever this one does not apply: another device or dtype, fewer than ``MIN_ROWS`` rows, or
oneDNN switched off (``torch.backends.mkldnn.enabled = False``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

_linear = getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)
# Below this many rows MKL wins: one action for one observation (act) takes 0.29 ms on oneDNN's path
# and 0.12 ms on MKL's (batch 1, 256-256, one thread); at the update's 256 rows oneDNN's GEMM is ~2x faster.
MIN_ROWS = 32


def onednn_applies(x: Tensor) -> bool:
    """Whether :func:`ensemble_mlp` should take oneDNN's GEMM for input ``x`` [rows, in]."""
    return (
        _linear is not None
        and x.dim() == 2
        and x.shape[0] >= MIN_ROWS
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and torch.backends.mkldnn.is_available()
        and torch.backends.mkldnn.enabled
    )


def _gemm(a: Tensor, b_t: Tensor, bias: Tensor | None = None, relu: bool = False) -> Tensor:
    """a @ b_tᵀ (+ bias, then ReLU): oneDNN's fp32 matmul; strided views are taken as they are."""
    return _linear(a, b_t, bias, "relu" if relu else "none", [], "")


class EnsembleMLP(torch.autograd.Function):
    """y[m] = MLP_m(x) for every member m: ``members`` ReLU MLPs on one shared input x [batch, in].

    ``params`` alternate weight [members, in, out] and bias [members, 1, out] per layer (views of
    nn.Linear's [out, in] weights are fine); ReLU after every layer but the last. Returns
    [members, batch, out_last].
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, *params: Tensor) -> Tensor:
        weights, biases = params[0::2], params[1::2]
        members, last = weights[0].shape[0], len(weights) - 1
        outputs, saved = [], [x]
        for m in range(members):
            h = x
            for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
                h = _gemm(h, w[m].t(), b[m].reshape(-1), relu=i < last)
                saved.append(h)
            outputs.append(h)
        ctx.save_for_backward(*saved, *weights)
        ctx.members, ctx.layers = members, len(weights)
        return torch.stack(outputs) if members > 1 else outputs[0].unsqueeze(0)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        members, layers = ctx.members, ctx.layers
        saved = ctx.saved_tensors
        x, acts, weights = saved[0], saved[1 : 1 + members * layers], saved[1 + members * layers :]
        need_x = ctx.needs_input_grad[0]
        need_w = ctx.needs_input_grad[1::2]
        need_b = ctx.needs_input_grad[2::2]
        grad_w: list[list[Tensor]] = [[] for _ in range(layers)]
        grad_b: list[list[Tensor]] = [[] for _ in range(layers)]
        grad_x = None
        for m in range(members):
            h_out = acts[m * layers : (m + 1) * layers]
            g = grad_out[m].contiguous()  # e.g. a sum's stride-0 gradient: oneDNN is slow on it
            for i in reversed(range(layers)):
                if i < layers - 1:  # ReLU' from the saved post-activation, as threshold_backward does
                    g = torch.ops.aten.threshold_backward(g, h_out[i], 0)
                h_in = x if i == 0 else h_out[i - 1]
                if need_w[i]:
                    grad_w[i].append(_gemm(h_in.t(), g.t()))  # ∂L/∂W = h_inᵀ g, [in, out]
                if need_b[i]:
                    grad_b[i].append(g.sum(0, keepdim=True))
                if i > 0 or need_x:
                    g_in = _gemm(g, weights[i][m])  # ∂L/∂h_in = g Wᵀ
                    if i > 0:
                        g = g_in
                    else:
                        grad_x = g_in if grad_x is None else grad_x + g_in
        grads: list[Tensor | None] = [grad_x]
        for i in range(layers):
            grads.append(torch.stack(grad_w[i]) if need_w[i] else None)
            grads.append(torch.stack(grad_b[i]) if need_b[i] else None)
        return tuple(grads)


def ensemble_mlp(x: Tensor, params: list[Tensor]) -> Tensor:
    """:class:`EnsembleMLP` on ``x`` [batch, in] with ``params`` (weight [M, in, out], bias [M, 1, out])."""
    return EnsembleMLP.apply(x, *params)
