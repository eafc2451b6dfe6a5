"""Shared off-policy actor-critic machinery (ERC, SAC, TD3): replay buffer, networks, the environment loop.

A method is its config (a subclass of :class:`runners.off_policy.config.OffPolicyConfig`) and its agent
(``act``, ``update``, ``squared_td_errors``, ``state_dict``/``load_state_dict``; see
:class:`runners.off_policy.loop.Agent`), plugged into :class:`runners.off_policy.loop.OffPolicyMethod`.
"""
