"""MerA's paper evaluation pieces (issue 15), offline: GLUE from a local directory in the hub's layout
through the same load_dataset call, the whole dev split (MNLI: validation_matched), MRPC's F1, the
backbones' own classification heads, published adapters from local folders, the anchor picked by the
few shots."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from data.text_tasks import load_glue
from methods.mera.config import MerAConfig, TextEncoderConfig
from methods.mera.method import MerA
from methods.mera.model import Classifier, f1_score, shot_score
from methods.mera.sources import ensure_sources
from tests.paper.standins import adapterhub_adapters, hub_glue, tiny_bert

SIZES = {
    "mrpc": {"train": 40, "validation": 450, "test": 8},
    "mnli": {"train": 60, "validation_matched": 430, "validation_mismatched": 20},
}


@pytest.fixture(scope="module")
def glue(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return hub_glue(tmp_path_factory.mktemp("glue") / "glue", SIZES)


@pytest.fixture(autouse=True)
def _datasets_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_datasets"))


def test_glue_from_a_local_directory_in_the_hubs_layout(glue: Path) -> None:
    dev = load_glue("mrpc", "validation", source=str(glue))
    assert len(dev) == 450 and dev.pair and dev.num_classes == 2  # every row: more than the old 408
    assert dev.texts[0][0].split()[0] in ("not_equivalent", "equivalent")
    assert set(np.unique(dev.labels)) == {0, 1}
    mnli = load_glue("mnli", "validation", source=str(glue))  # GLUE's dev split of MNLI: matched
    assert len(mnli) == 430 and mnli.num_classes == 3
    assert len(load_glue("mnli", "train", limit=25, source=str(glue))) == 25


def test_target_data_tests_on_the_whole_dev_split(glue: Path) -> None:
    method = MerA(task_source="glue", target="mnli", glue=str(glue), test_size=None, pool_per_class=16)
    pool, test = method.target_data()
    assert len(test) == 430 and test.num_classes == 3 and len(pool) == 60
    capped = MerA(task_source="glue", target="mrpc", glue=str(glue), test_size=100, pool_per_class=16)
    assert len(capped.target_data()[1]) == 100


def test_whole_dev_split_needs_glue() -> None:
    with pytest.raises(ValueError, match="test_size=null"):
        MerAConfig(test_size=None)


def test_f1_of_the_positive_class() -> None:
    preds, labels = np.array([1, 1, 0, 0, 1]), np.array([1, 0, 0, 1, 1])
    # tp = 2, predicted positive = 3, actual positive = 3
    assert f1_score(preds, labels) == pytest.approx(2 / 3)
    assert f1_score(np.zeros(3, int), np.zeros(3, int)) == pytest.approx(0.0)


def _bert_config() -> object:
    from transformers import BertConfig

    return BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
    )


def _roberta_config() -> object:
    from transformers import RobertaConfig

    return RobertaConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=40,
    )


@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_native_head_is_the_backbones_own_sequence_classification_head(family: str) -> None:
    """Same weights, same logits as BertForSequenceClassification (pooler + dropout + linear) and
    RobertaForSequenceClassification (<s>, dense, tanh, out_proj)."""
    from transformers import AutoModel, BertForSequenceClassification, RobertaForSequenceClassification

    torch.manual_seed(0)
    config = _bert_config() if family == "bert" else _roberta_config()
    config.num_labels = 3
    ref_cls = BertForSequenceClassification if family == "bert" else RobertaForSequenceClassification
    ref = ref_cls(config).eval()
    encoder = AutoModel.from_config(config)
    model = Classifier(encoder, 3, "native").eval()
    if family == "bert":
        encoder.load_state_dict(ref.bert.state_dict())
        model.head[1].load_state_dict(ref.classifier.state_dict())
        assert model.uses_pooler
    else:
        own = encoder.state_dict()
        own.update({k: v for k, v in ref.roberta.state_dict().items() if k in own})
        encoder.load_state_dict(own)
        model.head[1].load_state_dict(ref.classifier.dense.state_dict())
        model.head[4].load_state_dict(ref.classifier.out_proj.state_dict())
        assert not model.uses_pooler
    ids = torch.randint(3, 50, (4, 7))
    mask = torch.ones_like(ids)
    with torch.no_grad():
        ours, theirs = (
            model(input_ids=ids, attention_mask=mask),
            ref(input_ids=ids, attention_mask=mask).logits,
        )
    assert torch.allclose(ours, theirs, atol=1e-6)
    # a fresh head starts as the backbone's: normal(0, initializer_range), zero bias
    fresh = Classifier(AutoModel.from_config(config), 3, "native").head[-1]
    assert float(fresh.bias.detach().abs().max()) == pytest.approx(0.0)
    assert float(fresh.weight.detach().std()) == pytest.approx(config.initializer_range, rel=0.5)


class GivenFeatures(nn.Module):
    """A Classifier stand-in whose features for row i are ``vectors[input_ids[i, 0]]``."""

    def __init__(self, vectors: list[list[float]]) -> None:
        super().__init__()
        self.vectors = nn.Parameter(torch.tensor(vectors), requires_grad=False)

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.vectors[input_ids[:, 0]]


def test_shot_score_is_leave_one_out_nearest_class_mean() -> None:
    enc = {"input_ids": torch.arange(4)[:, None], "attention_mask": torch.ones(4, 1, dtype=torch.long)}
    labels = np.array([0, 0, 1, 1])
    separated = GivenFeatures([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]])
    assert shot_score(separated, enc, labels) == pytest.approx(1.0)
    mixed = GivenFeatures([[1, 0], [0, 1], [0.9, 0.1], [0.1, 0.9]])  # each shot nearest the other class
    assert shot_score(mixed, enc, labels) == pytest.approx(0.0)


def test_published_adapters_load_from_a_local_folder_per_id(tmp_path: Path) -> None:
    ids = ["AdapterHub/bert-base-uncased-pf-mnli", "AdapterHub/bert-base-uncased-pf-qqp"]
    published = [{"id": ids[0], "track": "nli"}, {"id": ids[1], "track": "sts"}]
    online = MerA(task_source="glue", target="mrpc", published=published)
    assert [s.location for s in ensure_sources(None, online.cfg)] == ids  # the hub ids, as before
    (tmp_path / ids[0]).mkdir(parents=True)
    (tmp_path / ids[0] / "adapter_config.json").write_text("{}")
    local = MerA(task_source="glue", target="mrpc", published=published[:1], adapter_dir=str(tmp_path))
    [source] = ensure_sources(None, local.cfg)
    assert source.location == str(tmp_path / ids[0]) and source.task == "mnli"
    missing = MerA(task_source="glue", target="mrpc", published=published, adapter_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="pf-qqp"):
        ensure_sources(None, missing.cfg)


def test_anchor_by_shots_merges_per_k_anchored_on_the_best_source(tmp_path: Path, glue: Path) -> None:
    model = tiny_bert(tmp_path / "bert")
    ids = [f"AdapterHub/bert-base-uncased-pf-{t}" for t in ("rte", "qnli", "qqp")]
    adapterhub_adapters(tmp_path / "adapters", model, ids, reduction_factor=4)
    published = [{"id": i, "track": "nli"} for i in ids]
    cfg = dict(task_source="glue", target="mrpc", glue=str(glue), published=published, max_length=32)
    method = MerA(**cfg, adapter_dir=str(tmp_path / "adapters"), anchor_by="shots", shots=[2, 4])
    enc_cfg = TextEncoderConfig(name=str(model), source="hub", package=None, pooling="native")
    ctx = SimpleNamespace(
        out_dir=tmp_path / "run",
        seed=0,
        device=torch.device("cpu"),
        cfg=OmegaConf.create({"model": OmegaConf.structured(enc_cfg)}),
    )
    ctx.out_dir.mkdir()
    sources = ensure_sources(enc_cfg, method.cfg)
    (ctx.out_dir / "sources.json").write_text(json.dumps([s.__dict__ for s in sources]))
    summary = method.stage_merge(ctx)
    names = [s.name for s in sources]
    for k in (2, 4):
        meta = json.loads((ctx.out_dir / f"merged_k{k}" / "adapter_config.json").read_text())
        assert summary[f"anchor_k{k}"] in names and meta["anchor"] == summary[f"anchor_k{k}"]
    assert not (ctx.out_dir / "merged").exists()
    # the anchor of each K is the source with the best shot score on that K's shots
    from methods.mera.model import load_encoder, tokenize

    encoder, tokenizer = load_encoder(enc_cfg)
    for s in sources:
        encoder.load_adapter(s.location, load_as=s.name)
    clf = Classifier(encoder, 2, "native")
    pool, _ = method.target_data()
    for k in (2, 4):
        shots = method.shot_draw(pool, k, seed=0)
        scores = []
        for s in sources:
            encoder.set_active_adapters(s.name)
            scores.append(shot_score(clf, tokenize(tokenizer, shots, 32), shots.labels))
        assert summary[f"anchor_k{k}"] == names[int(np.argmax(scores))]


def _record(root: Path, backbone: str, target: str, variant: str, metrics: dict[str, float]) -> None:
    run = root / f"{backbone}-{target}-{variant}"
    run.mkdir(parents=True)
    report = {"title": "t", "percent": ["acc_k2"], "paper_gains": {"MRPC": 0.035, "MNLI": 0.05}}
    method = {"variant": variant, "target": target, "task_source": "glue", "backbone": backbone}
    record = {"status": "completed", "metrics": metrics, "config": {"method": method, "report": report}}
    (run / "results.json").write_text(json.dumps(record))


def test_table_in_the_papers_layout_per_backbone_and_target_with_f1_and_the_papers_gain(
    tmp_path: Path,
) -> None:
    from methods.mera.table import make_table

    for backbone in ("bert-base-uncased", "roberta-base"):
        _record(tmp_path, backbone, "mrpc", "full_ft", {"acc_k2": 0.60, "f1_k2": 0.70})
        _record(tmp_path, backbone, "mrpc", "mera_same_track", {"acc_k2": 0.65, "f1_k2": 0.75})
        _record(tmp_path, backbone, "mnli", "full_ft", {"acc_k2": 0.40})
        _record(tmp_path, backbone, "mnli", "mera_same_track", {"acc_k2": 0.48})
    text = make_table(tmp_path)
    sections = text.split("\n## ")[1:]
    assert [s.splitlines()[0] for s in sections] == [
        "bert-base-uncased · mnli",
        "bert-base-uncased · mrpc",
        "roberta-base · mnli",
        "roberta-base · mrpc",
    ]
    mnli, mrpc = sections[0], sections[1]
    assert "Test F1" not in mnli and "K=2: +8.0. Paper (few-shot GLUE, BERT/RoBERTa): MNLI +5.0." in mnli
    assert "Test F1 (positive class) (%)" in mrpc and "| same-track MerA-OT | **75.0 ± 0.0 (1)** |" in mrpc
    assert "K=2: +5.0. Paper (few-shot GLUE, BERT/RoBERTa): MRPC +3.5." in mrpc


def test_paper_config_offline_names_each_hub_source_it_needs_before_loading(compose, tmp_path: Path) -> None:
    """The pre-flight sees the encoder through its interpolation, GLUE and every published adapter id;
    local folders for all three leave nothing to fetch."""
    from data.hub import hub_name_problem, hub_names

    cfg = compose(["method=mera", "scale=paper", "method.backbone=roberta-base"])
    names = {key: name for key, name, _, _ in hub_names(cfg)}
    assert names["model.name"] == "roberta-base" and names["method.glue"] == "nyu-mll/glue"
    assert names["method.published[0].id"] == "AdapterHub/roberta-base-pf-mnli"
    assert len([k for k in names if k.startswith("method.published")]) == 8
    local = [f"model.name={tmp_path}", f"method.glue={tmp_path}", f"method.adapter_dir={tmp_path}"]
    found = list(hub_names(compose(["method=mera", "scale=paper", *local])))
    assert [key for key, _, _, _ in found] == ["model.name"]  # a local folder, nothing to fetch
    assert [key for key, name, kind, _ in found if hub_name_problem(name, kind)] == []
    assert [key for key, name, kind, _ in hub_names(cfg) if hub_name_problem(name, kind)][:2] == [
        "model.name",
        "method.glue",
    ]  # offline (HF_HUB_OFFLINE=1 in the tests), each hub source is a problem
