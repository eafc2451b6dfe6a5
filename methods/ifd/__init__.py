"""IFD — Cherry data selection by Instruction-Following Difficulty (arXiv 2308.12032)."""
