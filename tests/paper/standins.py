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
        model_input_names=["input_ids", "attention_mask"],  # as the real causal-LM tokenizers
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


# GLUE as the hub's `nyu-mll/glue` holds it: per task its text columns, its label names and its splits.
GLUE_COLUMNS: dict[str, tuple[str, ...]] = {
    "cola": ("sentence",),
    "sst2": ("sentence",),
    "mrpc": ("sentence1", "sentence2"),
    "qqp": ("question1", "question2"),
    "mnli": ("premise", "hypothesis"),
    "qnli": ("question", "sentence"),
    "rte": ("sentence1", "sentence2"),
}
GLUE_LABELS: dict[str, tuple[str, ...]] = {
    "cola": ("unacceptable", "acceptable"),
    "sst2": ("negative", "positive"),
    "mrpc": ("not_equivalent", "equivalent"),
    "qqp": ("not_duplicate", "duplicate"),
    "mnli": ("entailment", "neutral", "contradiction"),
    "qnli": ("entailment", "not_entailment"),
    "rte": ("entailment", "not_entailment"),
}


def glue_splits(task: str) -> tuple[str, ...]:
    """The hub's split names of a GLUE task (MNLI's dev and test sets come matched and mismatched)."""
    if task == "mnli":
        return ("train", "validation_matched", "validation_mismatched", "test_matched", "test_mismatched")
    return ("train", "validation", "test")


def hub_glue(folder: Path, sizes: dict[str, dict[str, int]], seed: int = 0) -> Path:
    """GLUE in the hub's layout: `<task>/<split>-00000-of-00001.parquet` with the hub's columns (text
    columns, a ClassLabel `label` with the hub's names, `idx`) and the README's `configs:` block that maps
    each config to its files, so `datasets.load_dataset(folder, task, split=...)` reads it as it reads
    `nyu-mll/glue`. ``sizes``: {task: {split: rows}}; the first word of a text names its label, so a
    classifier can learn something. Test splits carry label -1, as the hub's do."""
    from datasets import ClassLabel, Dataset, Features, Value

    rng = np.random.default_rng(seed)
    words = np.array(CORPUS_WORDS)
    readme = ["---", "configs:"]
    for task, splits in sizes.items():
        columns, names = GLUE_COLUMNS[task], GLUE_LABELS[task]
        if not set(splits) <= set(glue_splits(task)):
            raise ValueError(f"{task}: the hub's splits are {glue_splits(task)}, got {sorted(splits)}")
        readme += [f"- config_name: {task}", "  data_files:"]
        features = Features(
            {
                **{c: Value("string") for c in columns},
                "label": ClassLabel(names=list(names)),
                "idx": Value("int32"),
            }
        )
        for split, n in splits.items():
            labels = np.arange(n) % len(names)
            rng.shuffle(labels)
            rows: dict[str, list[Any]] = {c: [] for c in columns}
            for y in labels:
                for c in columns:
                    body = " ".join(rng.choice(words, size=int(rng.integers(3, 8))))
                    rows[c].append(f"{names[y]} {body}")
            rows["label"] = [-1] * n if split.startswith("test") else labels.tolist()
            rows["idx"] = list(range(n))
            out = folder / task / f"{split}-00000-of-00001.parquet"
            out.parent.mkdir(parents=True, exist_ok=True)
            Dataset.from_dict(rows, features=features).to_parquet(str(out))
            readme += [f"  - split: {split}", f"    path: {task}/{split}-*"]
    readme.append("---")
    (folder / "README.md").write_text("\n".join(readme) + "\n")
    return folder


def tiny_bert(folder: Path, seed: int = 0, layers: int = 2, hidden: int = 32) -> Path:
    """A random-weight BERT (pooler included) and a WordPiece tokenizer trained on a small English corpus
    (with the GLUE stand-ins' label names), via save_pretrained: what `bert-base-uncased` holds, in small."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, BertTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=300, special_tokens=specials)
    labels = " ".join(" ".join(n) for n in GLUE_LABELS.values()).replace("_", " ")
    tok.train_from_iterator([_CORPUS, labels] * 4, trainer=trainer)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    tokenizer = BertTokenizerFast(tokenizer_object=tok, do_lower_case=True)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=2 * hidden,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def adapterhub_adapters(
    folder: Path, model: Path, ids: list[str], reduction_factor: int = 16, seed: int = 0
) -> Path:
    """Random bottleneck adapters for ``model`` saved in AdapterHub's format (`save_adapter`: its
    adapter_config.json and weights) under ``folder/<id>`` for each published id (`AdapterHub/...-pf-mnli`),
    each from its own initialisation with non-zero up-projections, as trained adapters have."""
    import adapters
    import torch
    from adapters import SeqBnConfig
    from transformers import AutoModel

    for i, adapter_id in enumerate(ids):
        encoder = AutoModel.from_pretrained(model)
        adapters.init(encoder)
        name = adapter_id.replace("/", "__")
        torch.manual_seed(seed + i)
        encoder.add_adapter(name, config=SeqBnConfig(reduction_factor=reduction_factor))
        with torch.no_grad():
            for key, p in encoder.named_parameters():
                if f"adapters.{name}." in key:
                    p.normal_(0.0, 0.05)
        (folder / adapter_id).mkdir(parents=True, exist_ok=True)
        encoder.save_adapter(str(folder / adapter_id), name)
    return folder


def hub_dataset_card(folder: Path, configs: dict[str, tuple[str, ...]]) -> Path:
    """The README.md a hub dataset repo opens with: its `configs` (name -> splits, each split's files
    `<config>/<split>-*`), which `datasets.load_dataset(folder, <config>)` reads as it reads the hub's."""
    lines = ["---", "configs:"]
    for i, (name, splits) in enumerate(configs.items()):
        lines += [f"- config_name: {name}", "  data_files:"]
        for split in splits:
            lines += [f"  - split: {split}", f"    path: {name}/{split}-*"]
        if i == 0:
            lines.append("  default: true")
    (folder / "README.md").write_text("\n".join([*lines, "---", ""]))
    return folder


def hub_image_repo(
    folder: Path, name: str, n_per_split: dict[str, int], size: int = 32, seed: int = 0
) -> Path:
    """A stand-in for the hub repo of `name` (cifar10, cifar100, svhn) with its config, columns and card:
    uoft-cs/cifar10 (plain_text: img/label), uoft-cs/cifar100 (cifar100: img/fine_label/coarse_label),
    ufldl-stanford/svhn (cropped_digits: image/label)."""
    layout = {
        "cifar10": ("plain_text", 10, ("label",), "img"),
        "cifar100": ("cifar100", 100, ("fine_label", "coarse_label"), "img"),
        "svhn": ("cropped_digits", 10, ("label",), "image"),
    }
    config, n_classes, label_columns, image_column = layout[name]
    hub_image_dataset(folder, n_per_split, n_classes, label_columns, image_column, size, config, seed)
    return hub_dataset_card(folder, {config: tuple(n_per_split)})


def official_test_sets(folder: Path, n: int = 3, seed: int = 0) -> dict[str, Path]:
    """The four open-ended test sets of AlpaGasus and IFD as the official repos' JSONL files hold them
    (tianyi-lab/Cherry_LLM evaluation/test_data/*_test_set.jsonl), ``n`` items each, in each file's own
    schema: Vicuna {question_id, text, category}, Koala {id, prompt}, WizardLM {idx, Skill, Difficulty,
    Instruction}, Self-Instruct {id, motivation_app, instruction, instances: [{input, output}]}."""
    rng = np.random.default_rng(seed)
    words = np.array(CORPUS_WORDS)

    def text(k: int) -> str:
        return " ".join(rng.choice(words, size=k)).capitalize() + "?"

    rows = {
        "vicuna": [{"question_id": i + 1, "text": text(6), "category": "generic"} for i in range(n)],
        "koala": [{"id": f"koala_{i + 1}", "prompt": text(7)} for i in range(n)],
        "wizardlm": [
            {"idx": i + 1, "Skill": "Math", "Difficulty": 3, "Instruction": text(8)} for i in range(n)
        ],
        "sinstruct": [
            {
                "id": f"user_oriented_task_{i}",
                "motivation_app": "Grammarly",
                "instruction": text(5),
                "instances": [{"input": text(4) if i % 2 else "", "output": text(3)}],
            }
            for i in range(n)
        ],
    }
    return {name: write_jsonl(folder / f"{name}_test_set.jsonl", items) for name, items in rows.items()}
