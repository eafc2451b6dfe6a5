"""TD3 — Twin Delayed DDPG (Fujimoto et al. 2018, arXiv 1802.09477), a baseline of the ERC table."""
