"""bench/erc_speed.py's ratios and its SBX learner's set-up (issue 17)."""

from __future__ import annotations

import pytest

from bench import erc_speed
from methods.erc.config import ERCConfig


def _rows(**steps_per_second: float) -> dict[str, dict[str, float]]:
    return {name.replace("_", " "): {"steps_per_second": v} for name, v in steps_per_second.items()}


def test_ratios_against_sbx_at_the_same_work() -> None:
    rows = _rows(ours_SAC=60.0, ours_ERC=54.0, SB3_SAC=40.0, ours_SAC_pe1=45.0)
    rows["SBX SAC"] = {"steps_per_second": 50.0}
    rows["SBX SAC pd2"] = {"steps_per_second": 48.0}
    ratios = erc_speed.compute_ratios(rows)
    same_work = ratios["ours SAC pe1 / SBX SAC"]
    assert same_work["value"] == pytest.approx(0.9) and same_work["pass"] is False
    official = ratios["ours SAC / SBX SAC pd2"]
    assert official["value"] == pytest.approx(1.25) and official["pass"] is True
    assert ratios["ours SAC pe1 / SB3 SAC"]["pass"] is None  # information only


def test_ratios_without_sbx_have_no_value() -> None:
    ratios = erc_speed.compute_ratios(_rows(ours_SAC=60.0, ours_ERC=54.0, SB3_SAC=40.0, ours_SAC_pe1=45.0))
    assert ratios["ours SAC pe1 / SBX SAC"] == {"value": None, "target": 1.0, "pass": None}
    assert ratios["ours SAC / SB3 SAC"]["value"] == pytest.approx(1.5)


@pytest.mark.slow  # JAX's import and first jit: ~25 s on a loaded 2-core machine
def test_sbx_learner_does_our_work() -> None:
    """SBX gets our networks, batch, schedule and optimiser settings (the bench extra; skipped without)."""
    pytest.importorskip("sbx")
    model = erc_speed.make_sbx("cartpole_swingup", total=1000, policy_delay=2)
    ours = ERCConfig(_target_="x", name="sac")
    assert (model.batch_size, model.learning_starts, model.policy_delay) == (256, 256, 2)
    assert (model.gradient_steps, model.train_freq.frequency) == (1, 1)
    assert (model.gamma, model.tau) == (ours.gamma, ours.tau)
    assert model.learning_rate == ours.actor_lr == ours.critic_lr
    assert model.policy.net_arch_pi == model.policy.net_arch_qf == erc_speed.HIDDEN
    assert model.policy.n_critics == 2
