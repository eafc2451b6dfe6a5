"""Miniature stand-ins in the real formats, for rehearsing paper configurations offline (DESIGN.md,
"Paper scale, and its rehearsal"). Each builder writes into a folder what the hub or an official repo
holds — `save_pretrained` models and tokenizers, parquet files in the hub's layout, JSON/JSONL in the
official schemas — so the same loaders that take a hub id take the folder. Nothing here is imported by
the project's code.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np

# A small corpus of real English for the tokenizers: enough pieces that any prompt tokenizes.
_CORPUS = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the "
    "request. ### Instruction: ### Input: ### Response: Give three tips for staying healthy. Eat a balanced "
    "diet, exercise regularly and sleep well. The answer is True False yes no because therefore question "
    "premise hypothesis entailment contradiction neutral sentence positive negative paraphrase"
)
CORPUS_WORDS = _CORPUS.split()

# Per family, what its real tokenizer adds around a text: Llama prepends <s>, OPT prepends </s>,
# GPT-NeoX adds nothing; BERT wraps in [CLS] ... [SEP].
_FAMILIES: dict[str, dict[str, Any]] = {
    "llama": {"bos": "<s>", "eos": "</s>", "prefix": "<s>", "model_type": "llama"},
    "opt": {"bos": "</s>", "eos": "</s>", "prefix": "</s>", "model_type": "opt"},
    "gpt_neox": {"bos": "<|endoftext|>", "eos": "<|endoftext|>", "prefix": None, "model_type": "gpt_neox"},
}


def tiny_tokenizer(family: str, vocab_size: int = 400) -> Any:
    """A byte-level BPE trained on a small English corpus, with the family's special tokens and BOS rule."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    spec = _FAMILIES[family]
    specials = sorted({spec["bos"], spec["eos"], "<unk>", "<pad>"})
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator([_CORPUS] * 4, trainer=trainer)
    if spec["prefix"]:
        prefix = spec["prefix"]
        tok.post_processor = processors.TemplateProcessing(
            single=f"{prefix} $A", pair=f"{prefix} $A $B", special_tokens=[(prefix, tok.token_to_id(prefix))]
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=spec["bos"],
        eos_token=spec["eos"],
        unk_token="<unk>",
        pad_token="<pad>",
    )


def tiny_causal_lm(folder: Path, family: str, seed: int = 0, layers: int = 2, hidden: int = 32) -> Path:
    """A random-weight causal LM of the family's architecture and its tokenizer, via save_pretrained."""
    import torch
    from transformers import AutoModelForCausalLM, GPTNeoXConfig, LlamaConfig, OPTConfig

    tokenizer = tiny_tokenizer(family)
    ids = {
        "vocab_size": len(tokenizer),
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    if family == "llama":
        config = LlamaConfig(
            hidden_size=hidden,
            intermediate_size=2 * hidden,
            num_hidden_layers=layers,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=2048,
            **ids,
        )
    elif family == "opt":
        config = OPTConfig(
            hidden_size=hidden,
            ffn_dim=2 * hidden,
            num_hidden_layers=layers,
            num_attention_heads=4,
            word_embed_proj_dim=hidden,
            max_position_embeddings=2048,
            **ids,
        )
    elif family == "gpt_neox":
        config = GPTNeoXConfig(
            hidden_size=hidden,
            intermediate_size=2 * hidden,
            num_hidden_layers=layers,
            num_attention_heads=4,
            max_position_embeddings=2048,
            **ids,
        )
    else:
        raise ValueError(f"family {family!r}: choose one of {', '.join(_FAMILIES)}")
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def alpaca_records(n: int, seed: int = 0) -> list[dict[str, str]]:
    """Records in the Alpaca schema (instruction, input, output), some with an empty input."""
    rng = np.random.default_rng(seed)
    words = np.array(CORPUS_WORDS)
    records = []
    for i in range(n):
        instruction = " ".join(rng.choice(words, size=int(rng.integers(4, 9))))
        context = "" if i % 3 == 0 else " ".join(rng.choice(words, size=int(rng.integers(2, 6))))
        output = " ".join(rng.choice(words, size=int(rng.integers(3, 12))))
        records.append({"instruction": instruction.capitalize() + "?", "input": context, "output": output})
    return records


def write_json(path: Path, records: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(records, indent=1))
    return path


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def hub_image_dataset(
    folder: Path,
    n_per_split: dict[str, int],
    n_classes: int,
    label_columns: tuple[str, ...] = ("label",),
    image_column: str = "img",
    size: int = 32,
    config: str = "plain_text",
    seed: int = 0,
) -> Path:
    """An image classification set as the hub repo holds it: `<config>/<split>-00000-of-00001.parquet`
    with a PNG `{bytes, path}` image column and integer label columns (CIFAR-10: img/label; CIFAR-100:
    img/fine_label/coarse_label; SVHN cropped_digits: image/label)."""
    from datasets import ClassLabel, Dataset, Features, Image
    from PIL import Image as PILImage

    rng = np.random.default_rng(seed)
    for split, n in n_per_split.items():
        labels = np.arange(n) % n_classes
        images = []
        for label in labels:
            # Class-dependent mean colour plus noise: a probe can learn it, so a metric moves.
            base = (np.array([label * 37 % 256, label * 91 % 256, label * 53 % 256]) + 0.0)[None, None, :]
            pixels = np.clip(base + rng.normal(0, 40, size=(size, size, 3)), 0, 255).astype(np.uint8)
            buf = io.BytesIO()
            PILImage.fromarray(pixels).save(buf, format="PNG")
            images.append({"bytes": buf.getvalue(), "path": None})
        columns: dict[str, Any] = {image_column: images}
        for column in label_columns:
            columns[column] = labels.tolist()
        # Written by `datasets` itself, as the hub's parquet files are: the features ride in the metadata.
        names = [f"class_{i}" for i in range(n_classes)]
        features = Features(
            {image_column: Image(), **{column: ClassLabel(names=names) for column in label_columns}}
        )
        out = folder / config / f"{split}-00000-of-00001.parquet"
        out.parent.mkdir(parents=True, exist_ok=True)
        Dataset.from_dict(columns, features=features).to_parquet(str(out))
    return folder
