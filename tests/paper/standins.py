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


def lm_eval_rte_task(folder: Path, n_train: int = 8, n_validation: int = 4, seed: int = 0) -> Path:
    """lm-eval's own RTE task (its installed tasks/glue/rte/default.yaml: prompt, choices, metric) with the
    source swapped for local JSONL files in GLUE's RTE schema {sentence1, sentence2, label, idx}; returns
    the task YAML's path, which ``method.tasks`` takes where an lm-eval task name goes."""
    import lm_eval
    import yaml

    spec = yaml.safe_load((Path(lm_eval.__file__).parent / "tasks/glue/rte/default.yaml").read_text())
    rng = np.random.default_rng(seed)
    words = np.array(CORPUS_WORDS)

    def sentence(k: int) -> str:
        return " ".join(rng.choice(words, size=k)).capitalize() + "."

    files = {}
    for split, n in (("train", n_train), ("validation", n_validation)):
        rows = [
            {"sentence1": sentence(12), "sentence2": sentence(5), "label": int(rng.integers(0, 2)), "idx": i}
            for i in range(n)
        ]
        files[split] = str(write_jsonl(folder / f"rte_{split}.jsonl", rows).resolve())
    spec.pop("dataset_name", None)
    spec.pop("tag", None)
    spec |= {"dataset_path": "json", "dataset_kwargs": {"data_files": files}}
    path = folder / "rte.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def tiny_adm_state_dict(cfg: Any, seed: int = 0) -> dict[str, Any]:
    """Random weights in guided_diffusion.unet.UNetModel's layout (zero-initialised convs made random): the
    plain state_dict a guided-diffusion .pt holds, for the ``create_model`` flags in ``cfg`` (an ADMConfig).
    Smaller widths than the paper's 256 channels keep its block numbering (input 1-18, middle 19, output
    20-37 at the paper's 256x256 levels)."""
    import torch

    from methods.diffusion_cls.adm import channel_mult

    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}
    mc, ted, nrb = cfg.num_channels, 4 * cfg.num_channels, cfg.num_res_blocks
    mult = channel_mult(cfg)
    attn_ds = {cfg.image_size // int(r) for r in cfg.attention_resolutions.split(",")}

    def rnd(*shape: int) -> torch.Tensor:
        return 0.2 * torch.randn(shape, generator=g)

    def lin(p: str, i: int, o: int) -> None:
        sd[f"{p}.weight"], sd[f"{p}.bias"] = rnd(o, i), rnd(o)

    def conv(p: str, i: int, o: int, k: int, dims: int = 2) -> None:
        sd[f"{p}.weight"], sd[f"{p}.bias"] = rnd(o, i, *([k] * dims)), rnd(o)

    def norm(p: str, c: int) -> None:
        sd[f"{p}.weight"], sd[f"{p}.bias"] = 1 + rnd(c), rnd(c)

    def res(p: str, i: int, o: int) -> None:
        norm(f"{p}.in_layers.0", i)
        conv(f"{p}.in_layers.2", i, o, 3)
        lin(f"{p}.emb_layers.1", ted, 2 * o if cfg.use_scale_shift_norm else o)
        norm(f"{p}.out_layers.0", o)
        conv(f"{p}.out_layers.3", o, o, 3)
        if i != o:
            conv(f"{p}.skip_connection", i, o, 1)

    def attn(p: str, c: int) -> None:
        norm(f"{p}.norm", c)
        conv(f"{p}.qkv", c, 3 * c, 1, dims=1)
        conv(f"{p}.proj_out", c, c, 1, dims=1)

    lin("time_embed.0", mc, ted)
    lin("time_embed.2", ted, ted)
    conv("input_blocks.0.0", 3, mc, 3)
    ch, chans, k, ds = mc, [mc], 1, 1
    for level, m in enumerate(mult):
        for _ in range(nrb):
            res(f"input_blocks.{k}.0", ch, int(m * mc))
            ch = int(m * mc)
            if ds in attn_ds:
                attn(f"input_blocks.{k}.1", ch)
            chans.append(ch)
            k += 1
        if level != len(mult) - 1:
            if cfg.resblock_updown:
                res(f"input_blocks.{k}.0", ch, ch)
            else:
                conv(f"input_blocks.{k}.0.op", ch, ch, 3)
            chans.append(ch)
            k, ds = k + 1, ds * 2
    res("middle_block.0", ch, ch)
    attn("middle_block.1", ch)
    res("middle_block.2", ch, ch)
    k = 0
    for level, m in list(enumerate(mult))[::-1]:
        for i in range(nrb + 1):
            res(f"output_blocks.{k}.0", ch + chans.pop(), int(mc * m))
            ch, idx = int(mc * m), 1
            if ds in attn_ds:
                attn(f"output_blocks.{k}.1", ch)
                idx = 2
            if level and i == nrb:
                if cfg.resblock_updown:
                    res(f"output_blocks.{k}.{idx}", ch, ch)
                else:
                    conv(f"output_blocks.{k}.{idx}.conv", ch, ch, 3)
                ds //= 2
            k += 1
    norm("out.0", ch)
    conv("out.2", ch, 6 if cfg.learn_sigma else 3, 3)
    return sd


def tiny_adm_checkpoint(path: Path, cfg: Any, seed: int = 0) -> Path:
    """``tiny_adm_state_dict`` saved with ``torch.save``, as guided-diffusion publishes its checkpoints."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(tiny_adm_state_dict(cfg, seed), path)
    return path


def hub_imagenet_repo(
    folder: Path,
    n_per_split: dict[str, int],
    n_labelled: int = 4,
    size: tuple[int, int] = (300, 260),
    seed: int = 0,
) -> Path:
    """A stand-in for ILSVRC/imagenet-1k as the hub repo holds it: `data/<split>-00000-of-00001.parquet`
    with a JPEG `{bytes, path}` `image` column of non-square images and a 1000-way ClassLabel `label`, the
    `test` split unlabelled (-1, as the real one), and the card's default config. The first ``n_labelled``
    classes are used, each with its own mean colour so that a probe can learn them."""
    from datasets import ClassLabel, Dataset, Features, Image
    from PIL import Image as PILImage

    rng = np.random.default_rng(seed)
    features = Features({"image": Image(), "label": ClassLabel(names=[f"n{i:08d}" for i in range(1000)])})
    for split, n in n_per_split.items():
        labels = np.arange(n) % n_labelled
        images = []
        for label in labels:
            base = np.array([label * 61 % 256, label * 97 % 256, label * 29 % 256], dtype=float)[None, None]
            pixels = np.clip(base + rng.normal(0, 30, size=(size[1], size[0], 3)), 0, 255).astype(np.uint8)
            buf = io.BytesIO()
            PILImage.fromarray(pixels).save(buf, format="JPEG")
            images.append({"bytes": buf.getvalue(), "path": None})
        column = (-np.ones(n, dtype=int) if split == "test" else labels).tolist()
        out = folder / "data" / f"{split}-00000-of-00001.parquet"
        out.parent.mkdir(parents=True, exist_ok=True)
        Dataset.from_dict({"image": images, "label": column}, features=features).to_parquet(str(out))
    lines = ["---", "configs:", "- config_name: default", "  data_files:"]
    for split in n_per_split:
        lines += [f"  - split: {split}", f"    path: data/{split}-*"]
    (folder / "README.md").write_text("\n".join([*lines, "---", ""]))
    return folder


def tiny_resnet18(
    folder: Path, widths: tuple[int, int, int, int] = (64, 128, 256, 512), seed: int = 0
) -> Path:
    """A random-weight ResNet-18 (basic blocks, depths 2-2-2-2, 512-d pooled output at the default widths)
    as `microsoft/resnet-18` holds it: transformers' ResNetModel via save_pretrained (config.json and
    model.safetensors), so `AutoModel.from_pretrained(folder)` loads it as it loads the hub id."""
    import torch
    from transformers import ResNetConfig, ResNetModel

    config = ResNetConfig(
        embedding_size=widths[0], hidden_sizes=list(widths), depths=[2, 2, 2, 2], layer_type="basic"
    )
    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    ResNetModel(config).save_pretrained(folder)
    return folder


# Real antonym pairs for the instruction-induction stand-in (the official antonyms task's kind of data).
_ANTONYMS = (
    ("happy", "sad"), ("hot", "cold"), ("up", "down"), ("open", "closed"), ("early", "late"),
    ("fast", "slow"), ("light", "dark"), ("full", "empty"), ("rich", "poor"), ("wet", "dry"),
    ("hard", "soft"), ("high", "low"), ("old", "new"), ("strong", "weak"), ("true", "false"),
    ("win", "lose"), ("push", "pull"), ("begin", "end"), ("loud", "quiet"), ("thick", "thin"),
)  # fmt: skip


def official_induction_task(
    folder: Path, task: str = "antonyms", n_induce: int = 20, n_execute: int = 10
) -> Path:
    """One instruction-induction task as the official repos hold it (Lichang-Chen/InstructZero
    experiments/data/instruction_induction/raw): ``induce/<task>.json`` and ``execute/<task>.json``, each
    ``{"metadata": {"num_examples": n}, "examples": {"1": {"input": x, "output": y}, ...}}`` (antonym pairs);
    returns the ``raw`` folder, which ``method.task_source`` takes where the official URL prefix goes."""
    for split, n, offset in (("induce", n_induce, 0), ("execute", n_execute, n_induce)):
        pairs = [_ANTONYMS[(offset + i) % len(_ANTONYMS)] for i in range(n)]
        examples = {str(i + 1): {"input": x, "output": y} for i, (x, y) in enumerate(pairs)}
        (folder / split).mkdir(parents=True, exist_ok=True)
        data = {"metadata": {"num_examples": n}, "examples": examples}
        (folder / split / f"{task}.json").write_text(json.dumps(data, indent=4))
    return folder


def lm_eval_local_task(folder: Path, installed_yaml: str, task: str, splits: dict[str, list[dict]]) -> Path:
    """An lm-eval task as the harness ships it (its installed ``tasks/<installed_yaml>``, included as it is:
    prompt, choices, metrics, process functions) with the hub dataset swapped for local JSONL files, one per
    split, in the hub dataset's schema; written as ``<folder>/<task>.yaml`` under the task's own name, so a
    folder of these is an lm-eval ``include_path``. Returns the YAML's path."""
    import lm_eval
    import yaml

    installed = Path(lm_eval.__file__).parent / "tasks" / installed_yaml
    assert installed.is_file(), installed
    files = {
        split: str(write_jsonl(folder / f"{task}_{split}.jsonl", rows).resolve())
        for split, rows in splits.items()
    }
    spec = {
        "include": str(installed),
        "task": task,
        "dataset_path": "json",
        "dataset_name": None,
        "dataset_kwargs": {"data_files": files},
    }
    path = folder / f"{task}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def lm_eval_local_group(folder: Path, group: str, tasks: list[str]) -> Path:
    """An lm-eval group YAML over tasks (or groups) of the same folder, as the harness's own group files."""
    import yaml

    spec = {
        "group": group,
        "task": tasks,
        "aggregate_metric_list": [{"metric": "acc", "weight_by_size": True}],
    }
    path = folder / f"_{group}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def open_llm_leaderboard_tasks(folder: Path, n: int = 4, n_shots: int = 25, seed: int = 0) -> Path:
    """The Open LLM Leaderboard (v1) tasks under their lm-eval names (arc_challenge, hellaswag, mmlu,
    truthfulqa_mc2), each the harness's own task over ``n`` local documents in its hub dataset's schema
    (allenai/ai2_arc, Rowan/hellaswag, cais/mmlu, truthfulqa/truthful_qa) and ``n_shots`` few-shot ones;
    ``mmlu`` is a group of groups as the harness's (mmlu -> mmlu_stem -> two subjects). Returns the
    folder, which ``method.leaderboard.include_path`` takes."""
    rng = np.random.default_rng(seed)
    words = np.array(CORPUS_WORDS)

    def text(k: int) -> str:
        return " ".join(rng.choice(words, size=k)).capitalize()

    def arc(i: int) -> dict:
        labels = ["A", "B", "C", "D"]
        return {
            "id": f"Mercury_{i}",
            "question": text(8) + "?",
            "choices": {"text": [text(3) for _ in labels], "label": labels},
            "answerKey": labels[int(rng.integers(4))],
        }

    def hellaswag(i: int) -> dict:
        return {
            "ind": i,
            "activity_label": text(2),
            "ctx_a": text(8) + ".",
            "ctx_b": text(3).lower(),
            "ctx": "",
            "endings": [text(5) + "." for _ in range(4)],
            "source_id": f"activitynet~v_{i}",
            "split": "val",
            "split_type": "indomain",
            "label": str(int(rng.integers(4))),
        }

    def mmlu(subject: str) -> dict:
        return {
            "question": text(8) + "?",
            "subject": subject,
            "choices": [text(3) for _ in range(4)],
            "answer": int(rng.integers(4)),
        }

    def truthfulqa(i: int) -> dict:
        choices = [text(4) + "." for _ in range(4)]
        return {
            "question": text(7) + "?",
            "mc1_targets": {"choices": choices, "labels": [1, 0, 0, 0]},
            "mc2_targets": {"choices": choices, "labels": [1, 1, 0, 0]},
        }

    folder.mkdir(parents=True, exist_ok=True)
    shots = max(n_shots, 1)
    lm_eval_local_task(
        folder,
        "arc/arc_challenge.yaml",
        "arc_challenge",
        {
            "train": [arc(i) for i in range(shots)],
            "validation": [arc(i) for i in range(2)],
            "test": [arc(i) for i in range(n)],
        },
    )
    lm_eval_local_task(
        folder,
        "hellaswag/hellaswag.yaml",
        "hellaswag",
        {"train": [hellaswag(i) for i in range(shots)], "validation": [hellaswag(i) for i in range(n)]},
    )
    subjects = ("abstract_algebra", "anatomy")
    for subject in subjects:  # cais/mmlu: dev holds the 5 few-shot examples
        splits = {
            "test": [mmlu(subject) for _ in range(n)],
            "validation": [mmlu(subject)],
            "dev": [mmlu(subject) for _ in range(5)],
        }
        lm_eval_local_task(folder, f"mmlu/default/mmlu_{subject}.yaml", f"mmlu_{subject}", splits)
    lm_eval_local_group(folder, "mmlu_stem", [f"mmlu_{s}" for s in subjects])
    lm_eval_local_group(folder, "mmlu", ["mmlu_stem"])
    lm_eval_local_task(
        folder,
        "truthfulqa/truthfulqa_mc2.yaml",
        "truthfulqa_mc2",
        {"validation": [truthfulqa(i) for i in range(n)]},
    )
    return folder


def hub_alpaca_eval(folder: Path, n: int = 3, seed: int = 0) -> Path:
    """The AlpacaEval set as its hub repo (tatsu-lab/alpaca_eval) holds it: ``alpaca_eval.json``, a JSON list
    of {instruction, output (the reference, text-davinci-003's), generator, dataset}; returns the folder,
    which ``method.alpaca_eval.source`` takes where the hub id goes."""
    rng = np.random.default_rng(seed)
    words = np.array(CORPUS_WORDS)

    def text(k: int) -> str:
        return " ".join(rng.choice(words, size=k)).capitalize()

    sets = ("helpful_base", "koala", "oasst", "selfinstruct", "vicuna")
    items = [
        {
            "instruction": text(7) + "?",
            "output": text(12) + ".",
            "generator": "text_davinci_003",
            "dataset": sets[i % len(sets)],
        }
        for i in range(n)
    ]
    write_json(folder / "alpaca_eval.json", items)
    return folder
