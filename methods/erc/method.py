"""ERC (and SAC, its β = 0 case) as an agent on the shared off-policy loop (runners.off_policy.loop)."""

from __future__ import annotations

from lightning.fabric import Fabric

from methods.erc.agent import SACAgent
from methods.erc.config import ERCConfig
from runners.off_policy.loop import OffPolicyMethod


class ERC(OffPolicyMethod):
    config_class = ERCConfig
    cfg: ERCConfig

    def make_agent(self, obs_dim: int, act_dim: int, hidden_dims: list[int], fabric: Fabric) -> SACAgent:
        return SACAgent(obs_dim, act_dim, hidden_dims, self.cfg, fabric)
