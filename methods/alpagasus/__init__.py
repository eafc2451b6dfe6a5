"""AlpaGasus — training on LLM-graded instruction data (arXiv 2307.08701)."""
