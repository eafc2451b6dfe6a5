"""λ schedules that need no validation data: none, constant, and CHAIN's curriculum.

The CHAIN paper's exact schedule could not be retrieved (chain.md). The form implemented follows the
paper's stated reasoning: the small-sample bias of the ML estimate is largest when (a) few labels are
available, since the bias is O(1/n), and (b) early in a fit, when the model has not yet settled and
over-confident directions form first. So the bias reduction starts strong and fades on both clocks:

    λ(t, n) = λ0 · (1 − min(t/T, 1))^p · (n0 / n)

with t the optimiser step of the current fit, n the number of labels this round and n0 the initial
labelled-set size. It needs no per-round tuning, unlike the grid and meta baselines.

T, the curriculum's length, is ``chain_fade × train_steps`` (config), and the fit's early stopping only
starts at step T (learner.fit's ``min_steps``): the fit early-stops, so measured against the nominal
``train_steps`` the curriculum would barely fade before the stop (on digits the kept parameters came
from steps with λ still at 0.75–1 of λ0·n0/n; issue 14). This way λ has reached its final value, 0, in
every fit before early stopping can fire, and the kept parameters were trained at that value: progress
is measured against the steps the curriculum actually runs, whatever the stopping point.
"""

from __future__ import annotations

from collections.abc import Callable


def chain_lambda(
    step: int, total_steps: int, n_labelled: int, n_initial: int, lam0: float, power: float
) -> float:
    """CHAIN's curriculum λ(t, n) = λ0 · (1 − t/T)^p · (n0 / n); 0 from step T on."""
    progress = min(max(step / total_steps, 0.0), 1.0)
    return lam0 * (1.0 - progress) ** power * (n_initial / n_labelled)


def fixed_lambda(schedule: str, lam: float, **chain: float) -> Callable[[int], float]:
    """λ as a function of the step for the schedules without validation data (none, constant, chain)."""
    if schedule == "none":
        return lambda step: 0.0
    if schedule == "constant":
        return lambda step: lam
    if schedule == "chain":
        return lambda step: chain_lambda(step, **chain)
    raise ValueError(f"schedule={schedule!r} has no fixed λ (grid and meta need validation data)")
