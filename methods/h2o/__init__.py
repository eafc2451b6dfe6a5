"""H2O — Heavy-Hitter Oracle KV-cache eviction (arXiv 2306.14048), with full/local/StreamingLLM/random."""
