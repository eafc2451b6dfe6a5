"""TD3 as an agent on the shared off-policy loop (runners.off_policy.loop)."""

from __future__ import annotations

from lightning.fabric import Fabric

from methods.td3.agent import TD3Agent
from methods.td3.config import TD3Config
from runners.off_policy.loop import OffPolicyMethod


class TD3(OffPolicyMethod):
    config_class = TD3Config
    cfg: TD3Config

    def make_agent(self, obs_dim: int, act_dim: int, hidden_dims: list[int], fabric: Fabric) -> TD3Agent:
        return TD3Agent(obs_dim, act_dim, hidden_dims, self.cfg, fabric)
