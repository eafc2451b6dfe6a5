"""MerA stage 2: merge N bottleneck adapters into one by aligning their hidden units, then averaging.

Spec (mera.md, after OT model fusion, Singh & Jaggi 2020): the backbone is frozen and shared, so only the
r bottleneck units of each adapter location may be permuted, and no alignment carries across locations.
For each location and each adapter k other than the anchor a:

    φ_j = [W_down[j, :], b_d[j], W_up[:, j]]                      unit descriptor
    C_ij = ‖φ_i^a − φ_j^k‖²                                        (weight-based; float64)
    T = argmin_{T ∈ Π(1/r_a, 1/r_k)} ⟨T, C⟩                        exact OT (POT's ot.emd)
    P = r_a · T;  W_down^k ← P W_down^k,  b_d^k ← P b_d^k,  W_up^k ← W_up^k Pᵀ
    θ = (1/N) Σ_k θ̂_k                                              (b_u averaged directly)

With equal widths the optimum is a vertex of the Birkhoff polytope, i.e. a permutation / r, so P is a
permutation matrix and the aligned adapter computes exactly the same function as before. The
activation-based variant takes C from the units' activations on the same target inputs instead.

An adapter here is a dict: location (e.g. ``encoder.layer.3.output``) -> unit dict with ``down_w`` (r×d),
``down_b`` (r), ``up_w`` (d×r), ``up_b`` (d).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import torch

Unit = dict[str, torch.Tensor]
AdapterWeights = dict[str, Unit]
ALIGNMENTS = ("weight", "activation", "none")
_PARTS = {("down.0", "weight"): "down_w", ("down.0", "bias"): "down_b", ("up", "weight"): "up_w"}
_PARTS[("up", "bias")] = "up_b"


# ----------------------------------------------------------------------- state dict <-> adapter weights


def extract(state: dict[str, torch.Tensor], name: str) -> AdapterWeights:
    """The bottleneck weights of adapter ``name`` from a model's state dict (AdapterHub parameter names)."""
    pattern = re.compile(rf"^(.*)\.adapters\.{re.escape(name)}\.adapter_(down\.0|up)\.(weight|bias)$")
    out: AdapterWeights = {}
    for key, value in state.items():
        m = pattern.match(key)
        if m:
            out.setdefault(m.group(1), {})[_PARTS[m.group(2), m.group(3)]] = value.detach().clone()
    if not out:
        raise KeyError(f"no bottleneck weights of adapter {name!r} in the state dict")
    return out


def to_state(weights: AdapterWeights, name: str) -> dict[str, torch.Tensor]:
    """The inverse of :func:`extract`: parameter names of adapter ``name`` -> tensors."""
    inverse = {v: k for k, v in _PARTS.items()}
    state = {}
    for loc, unit in weights.items():
        for part, value in unit.items():
            module, kind = inverse[part]
            state[f"{loc}.adapters.{name}.adapter_{module}.{kind}"] = value
    return state


# ----------------------------------------------------------------------- the alignment


def descriptors(unit: Unit) -> torch.Tensor:
    """φ_j = [W_down[j,:], b_d[j], W_up[:,j]] for every unit j: an (r, 2d+1) float64 matrix."""
    return torch.cat(
        [unit["down_w"].double(), unit["down_b"].double()[:, None], unit["up_w"].double().T], dim=1
    )


def squared_distances(x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """C_ij = ‖x_i − y_j‖² in float64 (rows of x against rows of y)."""
    x, y = x.double(), y.double()
    c = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2.0 * x @ y.T
    return c.clamp_min(0.0).numpy()


def transport_plan(cost: np.ndarray) -> np.ndarray:
    """Exact OT between uniform marginals 1/r_a and 1/r_k (POT's network simplex, ``ot.emd``)."""
    import ot

    r_a, r_k = cost.shape
    return ot.emd(np.full(r_a, 1.0 / r_a), np.full(r_k, 1.0 / r_k), np.ascontiguousarray(cost, np.float64))


def plan_to_map(plan: np.ndarray) -> np.ndarray:
    """P = r_a · T; with equal widths T is a permutation / r, and P is rounded to exact 0/1 entries."""
    p = plan.shape[0] * plan
    if plan.shape[0] == plan.shape[1] and np.allclose(p, np.round(p), atol=1e-9):
        p = np.round(p)
    return p


def apply_map(unit: Unit, p: np.ndarray) -> Unit:
    """W_down ← P W_down, b_d ← P b_d, W_up ← W_up Pᵀ (b_u is untouched: it is not per unit).

    A permutation matrix is applied by indexing (exact and cheaper than the dense products).
    """
    u = {k: v.double() for k, v in unit.items()}
    if p.shape[0] == p.shape[1] and set(np.unique(p)) <= {0.0, 1.0} and (p.sum(1) == 1).all():
        idx = torch.from_numpy(p.argmax(1))
        return {
            "down_w": u["down_w"][idx],
            "down_b": u["down_b"][idx],
            "up_w": u["up_w"][:, idx],
            "up_b": u["up_b"],
        }
    pm = torch.from_numpy(p)
    return {
        "down_w": pm @ u["down_w"],
        "down_b": pm @ u["down_b"],
        "up_w": u["up_w"] @ pm.T,
        "up_b": u["up_b"],
    }


def align(anchor: Unit, unit: Unit, cost: np.ndarray | None = None) -> tuple[Unit, np.ndarray]:
    """``unit`` aligned to ``anchor`` (weight-based cost unless ``cost`` is given) and its map P."""
    if cost is None:
        cost = squared_distances(descriptors(anchor), descriptors(unit))
    p = plan_to_map(transport_plan(cost))
    return apply_map(unit, p), p


def merge(
    adapters: list[AdapterWeights],
    alignment: str = "weight",
    activations: list[dict[str, torch.Tensor]] | None = None,
    anchor: int = 0,
) -> tuple[AdapterWeights, dict[str, Any]]:
    """Align every adapter to ``adapters[anchor]`` location by location, then average (float64 inside).

    ``activations[k][loc]`` is an (n_inputs, r) matrix of adapter k's bottleneck activations at ``loc`` on
    the same target inputs, needed for ``alignment="activation"``. Returns the merged adapter (float32)
    and a summary: the mean squared descriptor distance to the anchor before and after alignment.
    """
    if alignment not in ALIGNMENTS:
        raise ValueError(f"alignment={alignment!r} is not valid; choose one of: {', '.join(ALIGNMENTS)}")
    if alignment == "activation" and activations is None:
        raise ValueError("alignment='activation' needs the adapters' activations")
    if not adapters:
        raise ValueError("nothing to merge")
    ref = adapters[anchor]
    merged: AdapterWeights = {}
    before, after = [], []
    for loc in ref:
        aligned = []
        for k, adapter in enumerate(adapters):
            unit = {key: v.double() for key, v in adapter[loc].items()}
            if k != anchor and alignment != "none":
                # weight cost: the alignment's objective (weight-based) and, always, the diagnostics
                weight_cost = squared_distances(descriptors(ref[loc]), descriptors(unit))
                cost = weight_cost
                if alignment == "activation":
                    cost = squared_distances(activations[anchor][loc].T, activations[k][loc].T)
                unit, p = align(ref[loc], unit, cost)
                # mean over anchor units of ‖φ_i^a − φ_match(i)^k‖², before (identity match) and after
                before.append(float(np.trace(weight_cost)) / len(p) if p.shape[0] == p.shape[1] else np.nan)
                after.append(float((p * weight_cost).sum()) / len(p))
            aligned.append(unit)
        merged[loc] = {
            key: (sum(u[key] for u in aligned) / len(aligned)).float() for key in aligned[0]
        }  # θ = (1/N) Σ_k θ̂_k
    summary = {
        "n_merged": len(adapters),
        "distance_before": float(np.mean(before)) if before else 0.0,
        "distance_after": float(np.mean(after)) if after else 0.0,
    }
    return merged, summary


def permute(unit: Unit, perm: torch.Tensor) -> Unit:
    """The same function with its hidden units reordered: unit j of the result is unit perm[j]."""
    return {
        "down_w": unit["down_w"][perm],
        "down_b": unit["down_b"][perm],
        "up_w": unit["up_w"][:, perm],
        "up_b": unit["up_b"].clone(),
    }
