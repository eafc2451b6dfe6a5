"""A method declares the multi-process strategies it supports (``strategies`` on its schema); one for
which DDP has no meaning (a single-environment loop) refuses ``hardware=ddp|fsdp`` at compose time with a
message saying what to use instead: a multirun over seeds."""

from __future__ import annotations

import pytest

from runners.distributed import global_rank, is_global_zero, planned_world_size, strategy_family
from runners.validate import ConfigError, validate_overrides

CPU2 = ["hardware.accelerator=cpu", "hardware.devices=2"]


@pytest.mark.parametrize("method", ["erc", "sac", "chain", "instructzero"])
@pytest.mark.parametrize("hardware", ["ddp", "fsdp"])
def test_single_process_loops_refuse_multi_process_hardware(method: str, hardware: str) -> None:
    with pytest.raises(ConfigError) as refused:
        validate_overrides([f"method={method}", "scale=smoke", f"hardware={hardware}", *CPU2])
    text = str(refused.value)
    assert f"method={method} cannot use hardware={hardware}" in text
    assert f"python run.py -m method={method} seed=0,1,2 launcher=joblib" in text and "slurm" in text


def test_a_variant_of_the_ddp_strategy_is_refused_too() -> None:
    with pytest.raises(ConfigError, match="method=erc cannot use"):
        validate_overrides(["method=erc", "hardware.strategy=ddp_find_unused_parameters_true"])


def test_sbcl_declares_ddp_and_not_fsdp() -> None:
    cfg = validate_overrides(["method=sbcl", "scale=smoke", "hardware=ddp", *CPU2])
    assert cfg.hardware.strategy == "ddp"
    validate_overrides(["method=supcon", "scale=smoke", "hardware=ddp", *CPU2])
    with pytest.raises(ConfigError, match=r"method=sbcl cannot use hardware=fsdp .* it supports ddp"):
        validate_overrides(["method=sbcl", "scale=smoke", "hardware=fsdp", *CPU2])
    # SCooL shards its simulated devices over the ranks (methods/scool/shard.py, tests/test_scool_ddp.py)
    assert validate_overrides(["method=scool", "scale=smoke", "hardware=ddp", *CPU2]).hardware.devices == 2
    with pytest.raises(ConfigError, match=r"method=scool cannot use hardware=fsdp .* it supports ddp"):
        validate_overrides(["method=scool", "scale=smoke", "hardware=fsdp", *CPU2])


def test_one_process_hardware_is_never_refused() -> None:
    for method in ("erc", "chain", "scool", "instructzero", "sbcl"):
        validate_overrides([f"method={method}", "scale=smoke", "hardware=cpu"])


def test_the_cli_exits_2_with_the_message(cli) -> None:
    out = cli("method=erc", "scale=smoke", "hardware=ddp", *CPU2, timeout=60)
    assert out.returncode == 2
    assert "Config error: method=erc cannot use hardware=ddp" in out.stderr
    assert "Traceback" not in out.stderr


def test_strategy_family_and_planned_world_size(compose) -> None:
    assert strategy_family("ddp") == "ddp" and strategy_family("ddp_spawn") == "ddp"
    assert strategy_family("fsdp") == "fsdp" and strategy_family("auto") is None
    assert planned_world_size(compose(["method=sbcl", "hardware=ddp", *CPU2]).hardware) == 2
    assert planned_world_size(compose(["method=sbcl", "hardware=cpu"]).hardware) == 1
    two_nodes = compose(["method=sbcl", "hardware=ddp", *CPU2, "hardware.num_nodes=2"]).hardware
    assert planned_world_size(two_nodes) == 4


def test_rank_from_the_launchers_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_NTASKS", "SLURM_PROCID"):
        monkeypatch.delenv(key, raising=False)
    assert global_rank() == 0 and is_global_zero()
    monkeypatch.setenv("LOCAL_RANK", "1")  # a child Lightning's ddp launcher started
    assert global_rank() == 1 and not is_global_zero()
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("NODE_RANK", "1")  # first process of the second node
    assert not is_global_zero()
    monkeypatch.setenv("RANK", "0")  # torchrun's global rank wins
    assert is_global_zero()
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("NODE_RANK")
    monkeypatch.setenv("SLURM_NTASKS", "2")
    monkeypatch.setenv("SLURM_PROCID", "1")
    assert global_rank() == 1
