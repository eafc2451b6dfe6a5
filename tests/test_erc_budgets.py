"""Budgets are shared by every off-policy method (issue 15 item 3): conf/budget/off_policy/<scale>.yaml sets
only loop keys (OffPolicyConfig's fields), and ERC, SAC and TD3 all compose on it with the same values."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from runners.off_policy.config import OffPolicyConfig
from tests.conftest import ROOT

SCALES = ("smoke", "small", "paper")
LOOP_KEYS = {f.name for f in dataclasses.fields(OffPolicyConfig)} - {"_target_", "name"}


@pytest.mark.parametrize("scale", SCALES)
def test_shared_budget_sets_only_loop_keys(scale: str) -> None:
    budget = OmegaConf.load(Path(ROOT, "conf/budget/off_policy", f"{scale}.yaml"))
    assert set(budget.method) <= LOOP_KEYS, set(budget.method) - LOOP_KEYS
    assert set(budget) <= {"method", "env"}


@pytest.mark.parametrize("scale", SCALES)
def test_erc_sac_and_td3_compose_on_one_budget(compose, scale: str) -> None:
    """TD3's schema has no ERC keys (beta): it composes only because the budget holds none of them."""
    cfgs = {m: compose([f"method={m}", f"scale={scale}"]) for m in ("erc", "sac", "td3")}
    budget = OmegaConf.load(Path(ROOT, "conf/budget/off_policy", f"{scale}.yaml"))
    for cfg in cfgs.values():
        for key, value in budget.method.items():
            assert cfg.method[key] == value, key
        if "env" in budget:
            assert cfg.env.action_repeat == budget.env.action_repeat
    assert "beta" not in cfgs["td3"].method and cfgs["sac"].method.beta == 0.0
    loop = {m: {k: cfg.method[k] for k in LOOP_KEYS - {"actor_lr", "critic_lr"}} for m, cfg in cfgs.items()}
    assert loop["erc"] == loop["sac"] == loop["td3"]


def test_a_method_key_on_another_method_is_refused(compose) -> None:
    from hydra.errors import ConfigCompositionException

    with pytest.raises((ConfigCompositionException, ValueError, KeyError), match="beta"):
        compose(["method=td3", "scale=smoke", "method.beta=0.1"])
