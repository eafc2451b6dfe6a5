"""bench/erc_speed.py's ratios and its SBX learner's set-up (issue 17)."""

from __future__ import annotations

import json

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
    no_value = {"value": None, "low": None, "high": None, "target": 1.0, "pass": None}
    assert ratios["ours SAC pe1 / SBX SAC"] == no_value
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


def test_a_ratio_is_the_median_of_per_round_ratios_with_its_range() -> None:
    """A burst of load in one round (ours slowed 3x there) moves the range, not the median."""
    rows = _rows(ours_SAC=60.0, ours_ERC=54.0, SB3_SAC=40.0, ours_SAC_pe1=45.0)
    for row in rows.values():
        row["round_steps_per_second"] = [row["steps_per_second"]] * 3
    rows["ours SAC pe1"]["round_steps_per_second"] = [45.0, 15.0, 44.0]
    rows["SBX SAC"] = {"steps_per_second": 50.0, "round_steps_per_second": [50.0, 50.0, 40.0]}
    same_work = erc_speed.compute_ratios(rows)["ours SAC pe1 / SBX SAC"]
    assert same_work["value"] == pytest.approx(0.9)  # median of 0.9, 0.3, 1.1
    assert (same_work["low"], same_work["high"]) == (pytest.approx(0.3), pytest.approx(1.1))
    assert same_work["pass"] is False


@pytest.mark.slow  # MuJoCo, SB3 and 3 tiny runs per learner: ~25 s on a loaded 2-core machine
def test_quick_smoke_run_prints_every_target(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    erc_speed.main(["--quick", "--json", str(tmp_path / "speed.json")])
    out = capsys.readouterr().out
    for name in erc_speed.TARGETS:
        if erc_speed.TARGETS[name][2] is not None:
            assert f"TARGET {name}: " in out
    assert "not a measurement" in out
    record = json.loads((tmp_path / "speed.json").read_text())
    assert record["repeats"] == 2 and len(record["learners"]["ours SAC"]["all_seconds"]) == 2


def test_gemm_bench_counts_the_critic_steps_flops_and_runs_its_torch_cases() -> None:
    """bench/erc_gemm.py: two 6-256-256-1 MLPs on 256 rows, forward + weight grads + hidden-input grads."""
    from bench import erc_gemm

    forward = 2 * 256 * (6 * 256 + 256 * 256 + 256)  # one member, multiply-adds counted as 2 FLOPs
    assert erc_gemm.critic_flops(6) == 2 * (3 * forward - 2 * 256 * 6 * 256) == 205_258_752
    for name, (call, flops) in erc_gemm.torch_cases(6).items():
        call()
        assert flops > 0, name
