"""env=gym (issue 15 item 4): Gymnasium's MuJoCo tasks behind DMCEnv's interface, so ERC, SAC and TD3 run
on either suite."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from data.gym_env import GymEnv
from tests.loop_resume import run_in_process


def test_flat_float32_observations_action_scaling_and_repeat() -> None:
    env = GymEnv("HalfCheetah-v5", seed=0)
    assert (env.obs_dim, env.act_dim) == (17, 6)
    obs = env.reset()
    assert obs.shape == (17,) and obs.dtype == np.float32
    # HalfCheetah's box is [-1, 1]: the action passes through; Hopper's too; Humanoid's is [-0.4, 0.4]
    humanoid = GymEnv("Humanoid-v5", seed=0)
    assert humanoid._low.min() == pytest.approx(-0.4) and humanoid._high.max() == pytest.approx(0.4)

    one, two = GymEnv("HalfCheetah-v5", seed=0), GymEnv("HalfCheetah-v5", action_repeat=2, seed=0)
    one.reset(), two.reset()
    a = np.full(6, 0.3, np.float32)
    first_reward = one.step(a)[1]
    obs1, second_reward, _, _ = one.step(a)
    obs2, r2, _, _ = two.step(a)  # two physics steps in one call, their rewards summed
    assert r2 == pytest.approx(first_reward + second_reward)
    np.testing.assert_allclose(obs2, obs1)


def test_seeded_resets_are_reproducible_and_the_rng_state_round_trips() -> None:
    a, b = GymEnv("Hopper-v5", seed=3), GymEnv("Hopper-v5", seed=3)
    np.testing.assert_array_equal(a.reset(), b.reset())
    state = a.rng_state()
    first = a.reset()
    c = GymEnv("Hopper-v5", seed=99)
    c.set_rng_state(state)
    np.testing.assert_array_equal(c.reset(), first)  # the same next initial state
    a.seed(7), b.seed(7)
    np.testing.assert_array_equal(a.reset(), b.reset())


def test_a_fallen_hopper_is_terminal_and_the_time_limit_truncates() -> None:
    env = GymEnv("Hopper-v5", seed=0)
    env.reset()
    terminal = truncated = False
    steps = 0
    while not (terminal or truncated):
        _, _, terminal, truncated = env.step(np.ones(3, np.float32))
        steps += 1
    assert terminal and not truncated and steps < 1000  # full torque topples it long before the limit

    env = GymEnv("Swimmer-v5", seed=0)  # a swimmer never falls: the 1000-step TimeLimit ends it
    env.reset()
    steps = 0
    while True:
        _, _, terminal, truncated = env.step(np.zeros(2, np.float32))
        steps += 1
        if terminal or truncated:
            break
    assert truncated and not terminal and steps == 1000


@pytest.mark.parametrize("method", ["erc", "sac", "td3"])
def test_each_method_runs_on_gym(compose, tmp_path: Path, method: str) -> None:
    overrides = [
        *(f"method={method}", "env=gym", "env.task=Hopper-v5", "scale=smoke", "logger=none"),
        *("method.total_steps=300", "method.learning_starts=150", "method.eval_every=300"),
        *("method.batch_size=32", "method.td_probe_size=64", "model.hidden_dims=[32,32]"),
    ]
    metrics, ctx = run_in_process(compose, overrides, tmp_path)
    assert ctx.cfg.env._target_ == "data.gym_env.GymEnv" and ctx.cfg.method.name == method
    assert {"eval_return", "td_error_mean", "td_error_dispersion"} <= set(metrics)
    assert all(math.isfinite(v) for v in metrics.values())
    assert [s for s, _ in ctx.curves["eval_return"]] == [300]


def test_an_unknown_gym_task_is_refused_with_the_valid_ones() -> None:
    from runners.validate import ConfigError, validate_overrides

    with pytest.raises(
        ConfigError, match=r"env\.task='Nope-v5' is not a Gymnasium MuJoCo task.*HalfCheetah-v5"
    ):
        validate_overrides(["method=td3", "env=gym", "env.task=Nope-v5"])
