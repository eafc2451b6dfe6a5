"""MerA — merging pretrained adapters for few-shot learning (arXiv 2308.15982)."""
