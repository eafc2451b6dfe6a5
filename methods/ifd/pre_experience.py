"""The pre-experienced model of Cherry (arXiv 2308.12032, Sec. 3.1): a brief first look at the data.

As the official code does it (tianyi-lab/Cherry_LLM ``cherry_seletion/data_analysis.py --mod pre`` and
``data_by_cluster.py``, run by ``scripts/pre_experience_*.sh``):

1. Each instruction's prompt (the Alpaca prompt without the answer; with ``--prompt wiz`` the bare
   instruction), truncated to ``max_length`` (512) tokens, is embedded by the base model as the mean of
   its last hidden layer over every token, and scored by its perplexity.
2. k-means with 100 clusters (every k-means setting explicit: the defaults drift across scikit-learn
   versions; the official call ``KMeans(n_clusters=100, random_state=0)`` ran with n_init=10, k-means++,
   lloyd).
3. Per cluster, in dataset order: a cluster with fewer than ``per_cluster`` (10) members is kept whole;
   otherwise the members whose perplexity lies in [P25, P75] (``--low_th 25 --up_th 75``) form the band,
   kept whole if it has fewer than ``per_cluster`` members, else every ``len(band) // per_cluster``-th
   member from the first, ``per_cluster`` of them (~1k in all).
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


def pre_experience_text(record: InstructionRecord, template: str = "alpaca") -> str:
    """What the official ``--mod pre`` embeds and scores: the Alpaca prompt (instruction and input in the
    template), or, with the WizardLM template (``--prompt wiz``), the instruction alone (that branch of
    data_analysis.py never formats it)."""
    return format_prompt(record, template) if template == "alpaca" else record.instruction


def _encode(tokenizer: Any, records: Sequence[InstructionRecord], template: str, max_length: int) -> list:
    """Token ids of each prompt, truncated to ``max_length`` as ``tokenizer.encode(truncation=True)``."""
    return [
        tokenizer(pre_experience_text(r, template), truncation=True, max_length=max_length).input_ids
        for r in records
    ]


@torch.no_grad()
def prompt_embeddings(
    model: Any,
    tokenizer: Any,
    records: Sequence[InstructionRecord],
    batch_size: int = 16,
    template: str = "alpaca",
    max_length: int = 512,
) -> np.ndarray:
    """Mean last hidden state over each prompt's tokens, on the model's device. The batches are padded
    on the right, so a causal model's states of the real tokens (and their positions) are those of the
    prompt run alone, as the official code runs it."""
    ids = _encode(tokenizer, records, template, max_length)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = next(model.parameters()).device
    decoder = decoder_and_head(model)[0]
    out = []
    for start in range(0, len(ids), batch_size):
        chunk = ids[start : start + batch_size]
        width = max(len(x) for x in chunk)
        input_ids = torch.tensor([x + [pad] * (width - len(x)) for x in chunk], device=device)
        mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in chunk], device=device)
        hidden = decoder(input_ids=input_ids, attention_mask=mask).last_hidden_state
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        out.append(((hidden * weights).sum(1) / weights.sum(1)).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0))


def prompt_perplexities(
    model: Any,
    tokenizer: Any,
    records: Sequence[InstructionRecord],
    batch_size: int = 16,
    template: str = "alpaca",
    max_length: int = 512,
) -> np.ndarray:
    """Perplexity of each prompt: exp of the mean NLL of every token after the first given the ones
    before (``model(ids, labels=ids).loss``), on the same truncated tokens as the embedding."""
    pairs = [(x[:1], x[1:]) for x in _encode(tokenizer, records, template, max_length)]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return np.exp(np.array(answer_losses(model, pairs, batch_size=batch_size, pad_id=pad)))


def sample_middle_band(
    labels: np.ndarray, perplexities: np.ndarray, per_cluster: int, low: float = 25, high: float = 75
) -> list[int]:
    """Indices of the pre-experience set, cluster by cluster (data_by_cluster.py's
    ``sample_middle_confidence_data``): small clusters and small bands whole, else evenly strided picks
    from the [P_low, P_high] perplexity band in dataset order."""
    chosen: list[int] = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)  # dataset order
        if len(members) < per_cluster:
            chosen += members.tolist()
            continue
        ppl = perplexities[members]
        lower, upper = np.percentile(ppl, [low, high])
        band = members[(ppl >= lower) & (ppl <= upper)]
        if len(band) < per_cluster:
            chosen += band.tolist()
        else:
            chosen += band[:: len(band) // per_cluster][:per_cluster].tolist()
    return chosen


def pick_pre_experience(
    embeddings: np.ndarray,
    perplexities: np.ndarray,
    clusters: int,
    per_cluster: int,
    seed: int,
    low: float = 25,
    high: float = 75,
) -> list[int]:
    """k-means over the embeddings, then :func:`sample_middle_band`. ``seed`` is the k-means seed (the
    official script fixes 0: a run with seed=0 clusters as it does)."""
    from sklearn.cluster import KMeans

    k = min(clusters, len(embeddings))
    labels = KMeans(
        n_clusters=k, init="k-means++", n_init=10, max_iter=300, algorithm="lloyd", random_state=seed
    ).fit_predict(embeddings)
    return sample_middle_band(labels, perplexities, per_cluster, low, high)
