"""Where a SAC update's time goes at batch 256, 256-256 MLPs, one thread: the GEMMs in torch (MKL, the
default dense fp32 path, and oneDNN, runners.off_policy.onednn_mlp) against XLA (jax.numpy, as SBX runs),
and one twin-critic forward+backward in each (issue 17).

    OMP_NUM_THREADS=1 python bench/erc_gemm.py [--rounds 7] [--calls 50] [--in-dim 6]

Times are process CPU seconds per call (``time.process_time``: another process's load on a shared
machine does not count), the median over interleaved rounds (every case once per round), with the range.
Information only: no target. JAX is the ``bench`` extra; without it the XLA rows are left out.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from runners.off_policy.networks import TwinCritic

B = H = 256


def cpu_seconds(fn: Callable[[], object], calls: int) -> float:
    fn()
    start = time.process_time()
    for _ in range(calls):
        fn()
    return (time.process_time() - start) / calls


def torch_cases(in_dim: int) -> dict[str, tuple[Callable[[], object], float]]:
    """name → (call, FLOPs) for torch's MKL path and oneDNN's matmul at the update's GEMM shapes."""
    g = torch.Generator().manual_seed(0)
    x, w, grad = (torch.randn(B, H, generator=g) for _ in range(3))
    x2, w2 = torch.randn(2, B, H, generator=g), torch.randn(2, H, H, generator=g)
    xs, ws = torch.randn(B, in_dim, generator=g), torch.randn(in_dim, H, generator=g)
    block = torch.block_diag(w2[0], w2[1])
    xcat = torch.cat([x2[0], x2[1]], 1)
    lin = torch.ops.mkldnn._linear_pointwise
    square = 2.0 * B * H * H
    cases = {
        "MKL mm        [256,256]@[256,256]": (lambda: torch.mm(x, w), square),
        "MKL mm        h^T g (weight grad)": (lambda: torch.mm(x.t(), grad), square),
        "MKL bmm       [2,256,256]@[2,256,256]": (lambda: torch.bmm(x2, w2), 2 * square),
        "MKL 2 x mm    (the twins apart)": (
            lambda: (torch.mm(x2[0], w2[0]), torch.mm(x2[1], w2[1])),
            2 * square,
        ),
        "MKL mm        block-diagonal [256,512]@[512,512]": (lambda: torch.mm(xcat, block), 4 * square),
        f"MKL mm        [256,{in_dim}]@[{in_dim},256] (first layer)": (
            lambda: torch.mm(xs, ws),
            2.0 * B * in_dim * H,
        ),
        "oneDNN matmul [256,256]@[256,256]": (lambda: lin(x, w.t(), None, "none", [], ""), square),
        "oneDNN matmul h^T g (weight grad)": (lambda: lin(x.t(), grad.t(), None, "none", [], ""), square),
        f"oneDNN matmul [256,{in_dim}]@[{in_dim},256]": (
            lambda: lin(xs, ws.t(), None, "none", [], ""),
            2.0 * B * in_dim * H,
        ),
    }
    critic = TwinCritic(in_dim - 1, 1, [H, H])
    obs, act, y = torch.randn(B, in_dim - 1), torch.randn(B, 1), torch.randn(B)

    def critic_step() -> None:
        (critic(obs, act) - y).pow(2).mean(-1).sum().backward()
        critic.zero_grad(set_to_none=True)

    def plain_critic_step() -> None:
        torch._C._set_mkldnn_enabled(False)
        try:
            critic_step()
        finally:
            torch._C._set_mkldnn_enabled(True)

    flops = critic_flops(in_dim)
    cases["torch twin critic fwd+bwd, MKL (baddbmm)"] = (plain_critic_step, flops)
    cases["torch twin critic fwd+bwd, oneDNN (EnsembleMLP)"] = (critic_step, flops)
    return cases


def critic_flops(in_dim: int) -> float:
    """Forward, weight gradients and hidden-input gradients of two in_dim-256-256-1 MLPs on 256 rows."""
    per_member = 2.0 * B * (in_dim * H + H * H + H)
    return 2 * (3 * per_member - 2.0 * B * in_dim * H)


def jax_cases(in_dim: int) -> dict[str, tuple[Callable[[], object], float]]:
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        print("jax is not installed (`make install-bench`): no XLA rows")
        return {}
    rng = np.random.default_rng(0)
    x, w, grad = (jnp.asarray(rng.standard_normal((B, H), np.float32)) for _ in range(3))
    x2, w2 = (jnp.asarray(rng.standard_normal((2, B, H), np.float32)) for _ in range(2))
    mm = jax.jit(lambda a, b: a @ b)
    wgrad = jax.jit(lambda a, g: a.T @ g)
    bmm = jax.jit(lambda a, b: jnp.einsum("mbi,mio->mbo", a, b))
    ws = [
        jnp.asarray(rng.standard_normal(s, np.float32) / np.sqrt(s[1]))
        for s in ((2, in_dim, H), (2, H, H), (2, H, 1))
    ]
    xin, y = jnp.asarray(rng.standard_normal((B, in_dim), np.float32)), jnp.asarray(rng.standard_normal(B))

    def loss(params: list, x: jax.Array) -> jax.Array:
        h = jax.nn.relu(jnp.einsum("bi,mio->mbo", x, params[0]))
        h = jax.nn.relu(jnp.einsum("mbi,mio->mbo", h, params[1]))
        q = jnp.einsum("mbi,mio->mbo", h, params[2])[..., 0]
        return ((q - y) ** 2).mean(-1).sum()

    step = jax.jit(jax.grad(loss))
    square = 2.0 * B * H * H
    return {
        "XLA dot       [256,256]@[256,256]": (lambda: mm(x, w).block_until_ready(), square),
        "XLA dot       h^T g (weight grad)": (lambda: wgrad(x, grad).block_until_ready(), square),
        "XLA einsum    [2,256,256]@[2,256,256]": (lambda: bmm(x2, w2).block_until_ready(), 2 * square),
        "XLA twin critic fwd+bwd (one jitted program)": (
            lambda: jax.block_until_ready(step(ws, xin)),
            critic_flops(in_dim),
        ),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=50, help="calls per case per round")
    parser.add_argument("--in-dim", type=int, default=6, help="critic input (cartpole_swingup: 5 + 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    cases = {**torch_cases(args.in_dim), **jax_cases(args.in_dim)}
    seconds: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.rounds):
        for name, (fn, _) in cases.items():
            seconds[name].append(cpu_seconds(fn, args.calls))
    onednn = torch.backends.mkldnn.is_available()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, oneDNN available {onednn}")
    print(f"CPU seconds per call, median of {args.rounds} interleaved rounds x {args.calls} calls [range]\n")
    for name, s in seconds.items():
        med, flops = float(np.median(s)), cases[name][1]
        spread = f"[{min(s) * 1e6:.0f}-{max(s) * 1e6:.0f}]"
        print(f"{name:<50} {med * 1e6:8.1f} us {spread:<13} {flops / med / 1e9:6.1f} GFLOP/s")


if __name__ == "__main__":
    main()
