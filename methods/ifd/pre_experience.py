"""The pre-experienced model of Cherry (arXiv 2308.12032, Sec. 3.1): a brief first look at the data.

1. Embed each Alpaca-formatted instruction with the base model (mean of the last hidden layer).
2. k-means (100 clusters in the paper; every k-means setting explicit, since defaults drift across
   scikit-learn versions).
3. In each cluster keep instructions whose perplexity lies in [P25, P75]; take ``per_cluster`` evenly
   spaced ones (~1k in the paper).
The caller fine-tunes the base model on them (1 epoch) and scores IFD with that model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from data.instructions.records import InstructionRecord
from data.instructions.template import format_prompt
from methods.ifd.scoring import answer_losses, decoder_and_head


@torch.no_grad()
def prompt_embeddings(
    model: Any,
    tokenizer: Any,
    records: Sequence[InstructionRecord],
    batch_size: int = 16,
    template: str = "alpaca",
) -> np.ndarray:
    out = []
    for start in range(0, len(records), batch_size):
        prompts = [format_prompt(r, template) for r in records[start : start + batch_size]]
        batch = tokenizer(prompts, return_tensors="pt", padding=True).to(model.device)
        hidden = decoder_and_head(model)[0](**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        out.append(((hidden * mask).sum(1) / mask.sum(1)).float().cpu().numpy())
    return np.concatenate(out)


def prompt_perplexities(
    model: Any,
    tokenizer: Any,
    records: Sequence[InstructionRecord],
    batch_size: int = 16,
    template: str = "alpaca",
) -> np.ndarray:
    """Perplexity of each formatted instruction (every token after the first, given the ones before)."""
    pairs = []
    for r in records:
        ids = tokenizer(format_prompt(r, template)).input_ids
        pairs.append((ids[:1], ids[1:]))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return np.exp(np.array(answer_losses(model, pairs, batch_size=batch_size, pad_id=pad)))


def pick_pre_experience(
    embeddings: np.ndarray, perplexities: np.ndarray, clusters: int, per_cluster: int, seed: int
) -> list[int]:
    """Indices of the pre-experience set: per cluster, evenly spaced picks from the [P25, P75] band."""
    from sklearn.cluster import KMeans

    k = min(clusters, len(embeddings))
    labels = KMeans(
        n_clusters=k, init="k-means++", n_init=10, max_iter=300, algorithm="lloyd", random_state=seed
    ).fit_predict(embeddings)
    chosen: list[int] = []
    for c in range(k):
        members = np.flatnonzero(labels == c)
        ppl = perplexities[members]
        low, high = np.percentile(ppl, [25, 75])
        band = members[(ppl >= low) & (ppl <= high)]
        band = band[np.argsort(perplexities[band], kind="stable")]
        if len(band):
            picks = np.linspace(0, len(band) - 1, num=min(per_cluster, len(band))).round().astype(int)
            chosen += sorted(set(band[picks].tolist()))
    return sorted(chosen)
