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
        try:
            check_schemas(compose([f"{group}={option}"]))
        except ConfigError as ex:  # the default method (erc) declares no multi-process strategy (issue 16)
            assert group == "hardware" and "method=erc cannot use hardware=" in str(ex), ex


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


@pytest.mark.parametrize(
    ("overrides", "pattern"),
    [
        (["seed=abc"], r"^seed: expected an integer \(int\), got 'abc' \(str\), in override seed=abc$"),
        (["seed=1.5"], r"^seed: expected an integer \(int\), got 1\.5 \(float\)"),
        (["method=h2o", "method.budget=high"], r"^method\.budget: expected a number \(float\), got 'high'"),
        (["rerun=maybe"], r"^rerun: expected a boolean \(true or false\), got 'maybe'"),
        (["method=mera", "method.shots=[2,x]"], r"^method\.shots\[1\]: expected an integer \(int\), got 'x'"),
    ],
)
def test_a_wrong_type_names_the_key_the_type_and_the_value(overrides: list[str], pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        validate_overrides(overrides)


def test_an_empty_sweep_says_so() -> None:
    with pytest.raises(ConfigError, match=r"the sweep seed=range\(0,0\) is empty"):
        validate_overrides(["-m", "method=erc", "seed=range(0,0)"])


def test_an_added_key_a_schema_lacks_is_refused_with_the_valid_keys() -> None:
    with pytest.raises(
        ConfigError, match=r"Unknown config key 'method\.extra'.*Valid keys: name, gamma, .*beta, reg_clip"
    ):
        validate_overrides(["method=erc", "+method.extra=1"])


@pytest.mark.parametrize(
    ("override", "key"), [("checkpoint_every=-1", "checkpoint_every"), ("seed=-3", "seed")]
)
def test_negative_run_settings_are_refused(override: str, key: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{key}=-\d+ must be >= 0"):
        validate_overrides([override])


def test_an_unknown_dmc_task_lists_the_valid_tasks_and_every_real_task_composes() -> None:
    with pytest.raises(ConfigError, match=r"env\.task='cartpole_nope'.*cartpole_swingup.*walker_walk"):
        validate_overrides(["env.task=cartpole_nope"])
    validate_overrides(["env.task=humanoid_CMU_run"])  # upper case is a real task (the old regex refused it)


def test_the_static_dmc_task_list_is_dm_controls() -> None:
    from dm_control import suite

    from data.config import DMC_TASKS

    assert sorted(DMC_TASKS) == sorted(f"{d}_{t}" for d, t in suite.ALL_TASKS)


def test_a_key_without_a_value_says_how_to_write_it() -> None:
    with pytest.raises(ConfigError, match=r"'method\.beta' is not an override: write method\.beta=<value>"):
        validate_overrides(["method=erc", "method.beta"])


def test_values_of_hydra_flags_are_not_overrides() -> None:
    validate_overrides(["--cfg", "job", "method=sac", "-cn", "config"])


def test_gpu_hardware_needs_a_gpu_on_this_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    import runners.validate as validate

    monkeypatch.setattr(validate, "gpu_probe", lambda: False)
    monkeypatch.setattr(validate.sys, "platform", "linux")
    monkeypatch.delenv("REPROLAB_SKIP_GPU_CHECK", raising=False)
    validate_overrides(["hardware=gpu"])  # the config alone is fine
    with pytest.raises(ConfigError, match=r"hardware=gpu asks for a CUDA GPU.*hardware=cpu"):
        validate_overrides(["hardware=gpu"], check_machine=True)
    validate_overrides(["-m", "hardware=gpu", "launcher=slurm"], check_machine=True)  # runs elsewhere
    monkeypatch.setattr(validate, "gpu_probe", lambda: True)
    validate_overrides(["hardware=gpu"], check_machine=True)


FIXTURES = Path(__file__).resolve().parent / "fixtures" / "bad_inputs"


@pytest.mark.parametrize(
    ("name", "pattern"),
    [
        ("broken.jsonl", r"broken\.jsonl: line 7: invalid JSON \(Expecting value, column 37\)"),
        ("records.csv", r"unsupported suffix '\.csv'.*\.jsonl"),
        ("nonexistent.jsonl", r"no such file: .*nonexistent\.jsonl"),
        ("empty.jsonl", r"empty\.jsonl: the file holds no records"),
        ("wrongtype.json", r"record 3 \(line 17\): field 'output' must be a string"),
    ],
)
def test_a_bad_data_file_fails_at_compose_time(name: str, pattern: str) -> None:
    with pytest.raises(ConfigError, match=rf"^method\.data=.*{pattern}"):
        validate_overrides(["method=alpagasus", f"method.data={FIXTURES / name}"], check_machine=True)


def test_a_good_data_file_passes_the_compose_time_check() -> None:
    validate_overrides(["method=ifd", f"method.data={FIXTURES / 'good.jsonl'}"], check_machine=True)


def test_help_lists_only_the_groups_a_user_can_choose() -> None:
    from runners.validate import config_groups, help_text

    groups = config_groups()
    assert "budget" not in groups and not any(g.startswith("schema") for g in groups)
    assert {"erc", "sac", "h2o", "scool"} <= set(groups["method"])
    text = help_text(validate_overrides(["method=h2o"]))
    assert "method: alpagasus, ce, chain" in text and "name: h2o" in text
    assert not [line for line in text.splitlines() if line.startswith(("budget/", "schema/"))]
