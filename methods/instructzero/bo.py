"""One BO step: fit the GP to the standardised scores, maximise EI with CMA-ES from the best points.

As in the official run_instructzero.py: y standardised (no transform of z, which already lives in
[−1, 1]^d), ScaleKernel over the instruction-coupled kernel (or a plain Matérn on z for the ablation),
``fit_gpytorch_mll``, analytic EI with best_f = max y, one CMA-ES run (bounds [−1, 1], σ0 0.8, population
50, ≤ 10 generations) from each of the top points, candidates ranked by their EI.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import torch

log = logging.getLogger("reprolab")
DTYPE = torch.float64


def standardise(y: torch.Tensor) -> torch.Tensor:
    return (y - y.mean()) / (y.std() + 1e-9)


def fit_gp(X: torch.Tensor, y: torch.Tensor, S: torch.Tensor | None, coupled: bool, jitter: float):
    """The fitted SingleTaskGP on (X, standardised y); ``S`` holds the score vectors (coupled kernel)."""
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from gpytorch.kernels import ScaleKernel
    from gpytorch.mlls import ExactMarginalLogLikelihood

    from methods.instructzero.kernel import InstructionCoupledKernel, matern

    X, y = X.to(DTYPE), standardise(y.to(DTYPE)).unsqueeze(-1)
    base = InstructionCoupledKernel(X, S.to(DTYPE), jitter=jitter) if coupled else matern(X.shape[-1])
    gp = SingleTaskGP(X, y, covar_module=ScaleKernel(base), outcome_transform=None)
    mll = ExactMarginalLogLikelihood(gp.likelihood, gp)
    with warnings.catch_warnings():
        # z lives in [−1, 1]^d by design (not the unit cube BoTorch checks for); y is standardised above.
        warnings.simplefilter("ignore")
        try:
            fit_gpytorch_mll(mll)
        except Exception as ex:  # a failed fit keeps the initial hyperparameters; say so, go on
            log.warning("GP fit failed (%s: %s); using the initial hyperparameters", type(ex).__name__, ex)
    gp.eval()
    return gp, y


def cma_maximise(
    acquisition, x0: np.ndarray, sigma0: float, popsize: int, max_generations: int, seed: int
) -> tuple[np.ndarray, float]:
    """CMA-ES on −EI inside [−1, 1]^d from ``x0``; the best point seen and its EI."""
    import cma
    from gpytorch.utils.warnings import NumericalWarning

    es = cma.CMAEvolutionStrategy(
        x0.tolist(),
        sigma0,
        {"bounds": [-1, 1], "popsize": popsize, "seed": seed + 1, "verbose": -9},
    )
    for _ in range(max_generations):
        if es.stop():
            break
        xs = es.ask()
        with torch.no_grad(), warnings.catch_warnings():
            # Far from the data the coupled kernel's posterior variance can round below 0; GPyTorch clamps
            # it to 1e-10 and warns once per call, which would flood the log.
            warnings.simplefilter("ignore", NumericalWarning)
            values = acquisition(torch.tensor(np.array(xs), dtype=DTYPE).unsqueeze(1))
        es.tell(xs, (-values).cpu().numpy().tolist())
    return np.asarray(es.best.x), -float(es.best.f)


def propose(
    X: torch.Tensor,
    y: torch.Tensor,
    S: torch.Tensor | None,
    coupled: bool,
    n_points: int,
    n_starts: int,
    sigma0: float,
    popsize: int,
    max_generations: int,
    jitter: float,
    seed: int,
) -> torch.Tensor:
    """``n_points`` new points: CMA-ES optima of EI from the ``n_starts`` best points, highest EI first."""
    from botorch.acquisition.analytic import ExpectedImprovement

    gp, y_std = fit_gp(X, y, S, coupled, jitter)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # BoTorch recommends LogEI; the paper uses EI
        ei = ExpectedImprovement(gp, best_f=y_std.max().item())
    order = torch.argsort(-y)[:n_starts]
    found = [
        cma_maximise(ei, X[i].double().numpy(), sigma0, popsize, max_generations, seed + k)
        for k, i in enumerate(order.tolist())
    ]
    found.sort(key=lambda p: -p[1])
    points = [torch.tensor(p, dtype=torch.float32) for p, _ in found[:n_points]]
    # More points asked than starts: the rest are fresh random points (never with the paper's budget).
    g = torch.Generator().manual_seed(seed)
    while len(points) < n_points:
        points.append(torch.rand(X.shape[-1], generator=g) * 2 - 1)
    return torch.stack(points).clamp(-1, 1)
