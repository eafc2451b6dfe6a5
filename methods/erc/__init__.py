"""ERC — Eigensubspace Regularized Critic (arXiv 2306.16750), with SAC as its β = 0 baseline."""
