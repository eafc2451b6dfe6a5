"""MerA's merge (methods/mera/merge.py): OT alignment undoes unit permutations, and the merged adapter's
forward matches a hand-computed example."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from methods.mera.merge import align, extract, merge, permute, to_state, transport_plan


def random_unit(r: int = 6, d: int = 5, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "down_w": torch.randn(r, d, generator=g, dtype=torch.float64),
        "down_b": torch.randn(r, generator=g, dtype=torch.float64),
        "up_w": torch.randn(d, r, generator=g, dtype=torch.float64),
        "up_b": torch.randn(d, generator=g, dtype=torch.float64),
    }


def forward(unit: dict[str, torch.Tensor], h: torch.Tensor) -> torch.Tensor:
    """A(h) = h + W_up relu(W_down h + b_d) + b_u (the spec's bottleneck adapter)."""
    return h + unit["up_w"] @ torch.relu(unit["down_w"] @ h + unit["down_b"]) + unit["up_b"]


def test_permuted_adapter_aligns_back_exactly() -> None:
    unit = random_unit()
    perm = torch.randperm(6, generator=torch.Generator().manual_seed(1))
    shuffled = permute(unit, perm)
    assert not torch.equal(shuffled["down_w"], unit["down_w"])
    aligned, p = align(unit, shuffled)
    assert set(np.unique(p)) == {0.0, 1.0} and (p.sum(0) == 1).all() and (p.sum(1) == 1).all()
    for key in unit:
        assert torch.equal(aligned[key], unit[key]), key
    h = torch.randn(5, dtype=torch.float64)
    assert torch.allclose(forward(shuffled, h), forward(unit, h), atol=1e-12)  # permuting keeps the function


def test_merging_an_adapter_with_its_permuted_copy_gives_the_original() -> None:
    unit = random_unit(r=8, d=4, seed=3)
    shuffled = permute(unit, torch.randperm(8, generator=torch.Generator().manual_seed(2)))
    merged, summary = merge([{"l0": unit}, {"l0": shuffled}], "weight")
    for key in unit:  # the mean of a unit and its aligned copy, rounded to float32
        torch.testing.assert_close(merged["l0"][key], unit[key].float(), msg=key)
    # ‖φ − φ‖² summed in float64 from expanded squares: zero up to rounding, which varies with the CPU
    assert summary["distance_before"] > 0
    assert summary["distance_after"] == pytest.approx(0.0, abs=1e-12 * summary["distance_before"])
    plain, _ = merge([{"l0": unit}, {"l0": shuffled}], "none")  # without alignment the units blur
    assert not torch.allclose(plain["l0"]["down_w"], unit["down_w"].float(), atol=1e-3)


def test_activation_alignment_recovers_the_permutation_from_activations() -> None:
    unit = random_unit(r=5, d=3, seed=4)
    perm = torch.tensor([3, 0, 4, 1, 2])
    shuffled = permute(unit, perm)
    h = torch.randn(40, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    acts = [{"l0": torch.relu(h @ u["down_w"].T + u["down_b"])} for u in (unit, shuffled)]
    merged, _ = merge([{"l0": unit}, {"l0": shuffled}], "activation", acts)
    torch.testing.assert_close(merged["l0"]["up_w"], unit["up_w"].float())


def test_merged_forward_matches_hand_computed_example() -> None:
    """Adapter B is A with its two units swapped, plus b_d = 0.5 on one unit and b_u = 1.

    Aligned B: W_down = I, b_d = [0, .5], W_up = diag(1, 2), b_u = [1, 1]; merged with A:
    b_d = [0, .25], b_u = [.5, .5]. For h = [1, −1]: W_down h + b_d = [1, −.75] → relu [1, 0] →
    W_up · + b_u = [1.5, .5] → + h = [2.5, −.5]. The plain average gives [1.625, −.25] instead.
    """
    t = torch.tensor
    a = {
        "down_w": t([[1.0, 0], [0, 1]]),
        "down_b": t([0.0, 0]),
        "up_w": t([[1.0, 0], [0, 2]]),
        "up_b": t([0.0, 0]),
    }
    b = {
        "down_w": t([[0.0, 1], [1, 0]]),
        "down_b": t([0.5, 0]),
        "up_w": t([[0.0, 1], [2, 0]]),
        "up_b": t([1.0, 1]),
    }
    h = t([1.0, -1.0])
    merged, _ = merge([{"x": a}, {"x": b}], "weight")
    assert torch.allclose(forward(merged["x"], h), t([2.5, -0.5]))
    plain, _ = merge([{"x": a}, {"x": b}], "none")
    assert torch.allclose(forward(plain["x"], h), t([1.625, -0.25]))

    # The same numbers through AdapterHub's own bottleneck module (SeqBn = Pfeiffer).
    from adapters import SeqBnConfig
    from adapters.methods.modeling import Adapter

    module = Adapter("m", input_size=2, down_sample=2, config=SeqBnConfig())
    with torch.no_grad():
        module.adapter_down[0].weight.copy_(merged["x"]["down_w"])
        module.adapter_down[0].bias.copy_(merged["x"]["down_b"])
        module.adapter_up.weight.copy_(merged["x"]["up_w"])
        module.adapter_up.bias.copy_(merged["x"]["up_b"])
        out = module(h[None], residual_input=h[None])[0][0]
    assert torch.allclose(out, t([2.5, -0.5]))


def test_transport_plan_has_uniform_marginals_for_unequal_widths() -> None:
    cost = np.random.default_rng(0).random((4, 6))
    plan = transport_plan(cost)
    assert np.allclose(plan.sum(1), 1 / 4) and np.allclose(plan.sum(0), 1 / 6)


def test_state_dict_names_round_trip() -> None:
    unit = {k: v.float() for k, v in random_unit(r=2, d=3).items()}
    state = to_state({"encoder.layer.0.output": unit}, "merged")
    assert "encoder.layer.0.output.adapters.merged.adapter_down.0.weight" in state
    back = extract(state, "merged")
    assert all(torch.equal(back["encoder.layer.0.output"][k], unit[k]) for k in unit)
    with pytest.raises(KeyError, match="other"):
        extract(state, "other")
