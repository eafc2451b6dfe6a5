"""Config composition: every method × env × scale composes, budgets apply, bad input names the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from runners.validate import ConfigError, check_schemas, validate_overrides

CONF = Path(__file__).resolve().parent.parent / "conf"


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("method", options("method"))
@pytest.mark.parametrize("env", options("env"))
@pytest.mark.parametrize("scale", options("scale"))
def test_every_method_env_scale_composes(compose, method: str, env: str, scale: str) -> None:
    cfg = compose([f"method={method}", f"env={env}", f"scale={scale}"])
    check_schemas(cfg)
    assert cfg.method.name == method
    assert cfg.scale.name == scale


@pytest.mark.parametrize("group", ["hardware", "logger", "launcher", "experiment"])
def test_every_option_of_other_groups_composes(compose, group: str) -> None:
    for option in options(group):
        check_schemas(compose([f"{group}={option}"]))


def test_sac_is_erc_without_regulariser(compose) -> None:
    erc, sac = compose(["method=erc"]).method, compose(["method=sac"]).method
    assert erc.beta == 0.005 and sac.beta == 0.0
    assert {k: v for k, v in erc.items() if k not in ("name", "beta")} == {
        k: v for k, v in sac.items() if k not in ("name", "beta")
    }


@pytest.mark.parametrize("method", ["erc", "sac"])
def test_scale_selects_the_method_budget(compose, method: str) -> None:
    steps = {s: compose([f"method={method}", f"scale={s}"]).method.total_steps for s in options("scale")}
    assert steps == {"smoke": 1500, "small": 20000, "paper": 1_000_000}
    assert compose([f"method={method}", "scale=paper"]).method.learning_starts == 25_000


def test_command_line_beats_the_budget(compose) -> None:
    assert compose(["scale=smoke", "method.total_steps=777"]).method.total_steps == 777


def test_experiment_declares_sweep_and_report(compose) -> None:
    cfg = compose(["experiment=erc_dmc"])
    assert cfg.report.rows == ["env"] and cfg.report.columns == "method"
    assert cfg.report.paper.metrics.eval_return.cheetah_run.erc == 896


def test_unknown_method_key_names_it_and_lists_valid_keys() -> None:
    with pytest.raises(ConfigError) as err:
        validate_overrides(["method=erc", "method.betaa=1"])
    message = str(err.value)
    assert "betaa" in message and "beta, reg_clip" in message and "utd_ratio" in message


def test_unknown_root_key_lists_root_keys() -> None:
    with pytest.raises(ConfigError, match=r"'sed'.*Valid keys: method, env"):
        validate_overrides(["sed=3"])


def test_unknown_group_option_lists_choices() -> None:
    with pytest.raises(ConfigError, match=r"(?s)env/nope.*dmc"):
        validate_overrides(["env=nope"])


@pytest.mark.parametrize(
    ("override", "pattern"),
    [
        ("method.beta=-1", r"method\.beta=-1"),
        ("method.batch_size=0", r"method\.batch_size=0 must be >= 1"),
        ("hardware.precision=fp8", r"hardware\.precision='fp8'.*choose one of: 32-true"),
        ("env.task=Cartpole-Swingup", r"env\.task='Cartpole-Swingup'"),
        ("method.beta=abc", r"beta"),
    ],
)
def test_bad_values_are_refused_before_running(override: str, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        validate_overrides([override])


def test_sweep_values_are_checked(compose) -> None:
    validate_overrides(["-m", "method=erc,sac", "seed=0,1,2"])
    with pytest.raises(ConfigError, match="betaa"):
        validate_overrides(["method=erc,sac", "method.betaa=1,2"])


def test_cli_reports_config_errors_without_traceback(cli) -> None:
    result = cli("method=erc", "method.betaa=1")
    assert result.returncode == 2
    assert "betaa" in result.stderr and "Valid keys" in result.stderr
    assert "Traceback" not in result.stderr
