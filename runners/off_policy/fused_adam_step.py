"""``opt.step()`` for a fused Adam, as the one kernel call it comes down to, for the off-policy hot path.

``torch.optim.Adam.step`` (fused=True) ends in ``torch._foreach_add_(steps, 1)`` and one
``torch._fused_adam_`` call per parameter group (torch/optim/adam.py, ``_fused_adam``); on the way it runs
the optimizer's hook and profiler wrappers, ``_init_group``'s per-parameter checks and the grouping of
tensors by device and dtype: ~0.2 ms of Python per call, three calls per SAC update, next to a kernel of
~50 us. :func:`adam_step` makes those two calls itself where that is all ``step`` would do (state already
initialised, every parameter with a gradient, one device and dtype, no hooks, plain Adam options), and
calls ``opt.step()`` otherwise. The kernel and its arguments are the same, so the result is bitwise
``step``'s (tests/test_erc_speed_levers.py).
"""

from __future__ import annotations

import torch
from torch.optim import Adam
from torch.optim import optimizer as optim_module


def _direct(opt: Adam) -> bool:
    if type(opt) is not Adam:  # a subclass or a wrapper (Fabric's) may do more in step
        return False
    if (
        opt._optimizer_step_pre_hooks
        or opt._optimizer_step_post_hooks
        or optim_module._global_optimizer_pre_hooks
        or optim_module._global_optimizer_post_hooks
    ):
        return False
    for group in opt.param_groups:
        if not group["fused"] or group["amsgrad"] or group["maximize"] or group["capturable"]:
            return False
        if group["differentiable"] or group.get("decoupled_weight_decay", False):
            return False
        if isinstance(group["lr"], torch.Tensor) or any(isinstance(b, torch.Tensor) for b in group["betas"]):
            return False
        params = group["params"]
        if any(p.grad is None or p.grad.is_sparse or not opt.state.get(p) for p in params):
            return False  # the first step (state not yet made) or a parameter without a gradient
        first = params[0]
        if any(p.device != first.device or p.dtype != first.dtype or p.is_complex() for p in params):
            return False
    return True


def adam_step(opt: Adam) -> None:
    """``opt.step()``, bitwise, without ``Optimizer.step``'s per-call overhead where that is safe."""
    if not _direct(opt):
        opt.step()
        return
    with torch.no_grad():
        for group in opt.param_groups:
            params = group["params"]
            states = [opt.state[p] for p in params]
            steps = [s["step"] for s in states]
            torch._foreach_add_(steps, 1)
            beta1, beta2 = group["betas"]
            torch._fused_adam_(
                params,
                [p.grad for p in params],
                [s["exp_avg"] for s in states],
                [s["exp_avg_sq"] for s in states],
                [],
                steps,
                amsgrad=False,
                lr=group["lr"],
                beta1=beta1,
                beta2=beta2,
                weight_decay=group["weight_decay"],
                eps=group["eps"],
                maximize=False,
                grad_scale=None,
                found_inf=None,
            )
