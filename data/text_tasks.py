"""Offline text classification tasks built from real words and templates, grouped into tracks (MerA).

No GLUE ships offline (OFFLINE.md), so MerA's small scale uses tasks the code generates. Each track has
one skill that every task of the track needs, in different wording and over different words:

- ``entail`` (pairs, like MNLI/RTE): does the hypothesis name an item the premise lists?
- ``similar`` (pairs, like MRPC/QQP): do both sentences mention the same words (reordered, other template)
  or was one word swapped for another?
- ``sentiment`` (single sentences, like SST-2): an opinion adjective, possibly negated; the label is its
  polarity flipped by the negation.

Every task draws its content words from its own slice of ``data.instructions.generated.vocabulary()``
(1,541 English words; the slices are disjoint), and its sentiment adjectives from its own part of a small
hand-written polarity lexicon, so a held-out target shares a track's skill with the track's sources but
none of their words or templates. Online users get the same interface over GLUE via :func:`load_glue`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

# Real English opinion adjectives, split between the tasks of the sentiment track.
POSITIVE = ("good", "great", "excellent", "fine", "nice", "pleasant", "useful", "clear", "helpful")
POSITIVE += ("lovely", "superb", "wonderful", "brilliant", "delightful", "charming", "reliable", "solid")
POSITIVE += ("elegant",)
NEGATIVE = ("bad", "poor", "awful", "terrible", "ugly", "unpleasant", "useless", "confusing", "unhelpful")
NEGATIVE += ("nasty", "dreadful", "horrible", "boring", "broken", "clumsy", "sloppy", "flawed", "weak")


@dataclass(frozen=True)
class TaskSpec:
    """One task: its track, whether inputs are pairs, and the templates that word it."""

    name: str
    track: str
    pair: bool
    templates: tuple[str, ...]


# Templates: entail → (premise, hypothesis); similar → (first, second); sentiment → (positive, negated).
TASKS: tuple[TaskSpec, ...] = (
    TaskSpec("entail/box", "entail", True, ("the box holds {a}, {b} and {c}.", "the box holds {x}.")),
    TaskSpec("entail/trip", "entail", True, ("on the trip we saw {a}, {b} and {c}.", "we saw {x}.")),
    TaskSpec("entail/list", "entail", True, ("the list names {a}, {b} and {c}.", "{x} is on the list.")),
    TaskSpec("similar/pair", "similar", True, ("{a} goes with {b} and {c}.", "{c} and {b} go with {a}.")),
    TaskSpec("similar/team", "similar", True, ("{a} works for {b} on {c}.", "on {c}, {a} works for {b}.")),
    TaskSpec("similar/note", "similar", True, ("a note about {a}, {b} and {c}.", "{b}, {c}, {a}: noted.")),
    TaskSpec("sentiment/review", "sentiment", False, ("the {n} was {adj}.", "the {n} was not {adj}.")),
    TaskSpec(
        "sentiment/opinion",
        "sentiment",
        False,
        ("i think this {n} is {adj}.", "i do not think this {n} is {adj}."),
    ),
    TaskSpec(
        "sentiment/talk", "sentiment", False, ("people call the {n} {adj}.", "nobody calls the {n} {adj}.")
    ),
)
SPECS = {t.name: t for t in TASKS}
TRACKS = tuple(dict.fromkeys(t.track for t in TASKS))
# The last task of each track is held out as a target; the others are sources.
TARGETS = tuple([t.name for t in TASKS if t.track == track][-1] for track in TRACKS)
SOURCES = tuple(t.name for t in TASKS if t.name not in TARGETS)


@dataclass
class TextTask:
    """Labelled texts: ``texts`` are strings, or (first, second) pairs when ``pair``."""

    name: str
    track: str
    pair: bool
    texts: list
    labels: np.ndarray
    num_classes: int = 2

    def subset(self, idx: np.ndarray) -> TextTask:
        return TextTask(
            self.name,
            self.track,
            self.pair,
            [self.texts[i] for i in idx],
            self.labels[idx],
            self.num_classes,
        )

    def __len__(self) -> int:
        return len(self.labels)


def task_words(name: str) -> list[str]:
    """The task's own slice of the vocabulary (slices of different tasks are disjoint)."""
    from data.instructions.generated import vocabulary

    i = [t.name for t in TASKS].index(name)
    return list(vocabulary()[i :: len(TASKS)])


def task_adjectives(name: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The task's own positive and negative adjectives (disjoint across the sentiment track's tasks)."""
    track = [t.name for t in TASKS if t.track == "sentiment"]
    i = track.index(name)
    return POSITIVE[i :: len(track)], NEGATIVE[i :: len(track)]


def _example(spec: TaskSpec, label: int, words: list[str], rng: random.Random) -> str | tuple[str, str]:
    first, second = spec.templates
    if spec.track == "entail":
        a, b, c, other = rng.sample(words, 4)
        x = rng.choice((a, b, c)) if label else other
        return first.format(a=a, b=b, c=c), second.format(x=x)
    if spec.track == "similar":
        a, b, c, other = rng.sample(words, 4)
        slots = {"a": a, "b": b, "c": c}
        if not label:  # a paraphrase with one word swapped is no paraphrase
            slots[rng.choice("abc")] = other
        return first.format(a=a, b=b, c=c), second.format(**slots)
    positive, negative = task_adjectives(spec.name)
    polar = rng.random() < 0.5
    negated = int(polar) != label  # label 1 = positive overall: a positive word, or a negated negative one
    adj = rng.choice(positive if polar else negative)
    return (second if negated else first).format(n=rng.choice(words), adj=adj)


def make_task(name: str, n: int, seed: int) -> TextTask:
    """``n`` examples of task ``name`` with balanced labels, in a seeded order."""
    if name not in SPECS:
        raise ValueError(f"task {name!r} is not known; choose one of: {', '.join(SPECS)}")
    spec = SPECS[name]
    rng = random.Random(f"{name}/{seed}")
    words = task_words(name)
    labels = [i % 2 for i in range(n)]
    rng.shuffle(labels)
    texts = [_example(spec, y, words, rng) for y in labels]
    return TextTask(name, spec.track, spec.pair, texts, np.array(labels, dtype=np.int64))


# ------------------------------------------------------------------------------------------- online

# Tracks as AdapterHub names them (task ids nli/multinli, sts/mrpc, sentiment/sst-2, lingaccept/cola)
GLUE_TRACKS = {
    "mnli": "nli",
    "rte": "nli",
    "qnli": "nli",
    "mrpc": "sts",
    "qqp": "sts",
    "sst2": "sentiment",
    "cola": "lingaccept",
}
GLUE_FIELDS = {
    "mnli": ("premise", "hypothesis"),
    "rte": ("sentence1", "sentence2"),
    "qnli": ("question", "sentence"),
    "mrpc": ("sentence1", "sentence2"),
    "qqp": ("question1", "question2"),
    "sst2": ("sentence", None),
    "cola": ("sentence", None),
}


# The hub's GLUE dataset: `datasets.load_dataset(GLUE_HUB, task)`. A local directory in the same layout
# (`<task>/<split>-00000-of-00001.parquet` and the README's `configs:` block, as nyu-mll/glue holds them)
# loads through the same call.
GLUE_HUB = "nyu-mll/glue"
# GLUE's dev split of each task (MNLI has two; the matched one is the one GLUE and the papers report).
GLUE_DEV = {"mnli": "validation_matched"}
# Tasks whose GLUE score is F1 beside accuracy (of the positive class, label 1).
GLUE_F1 = ("mrpc", "qqp")


def load_glue(name: str, split: str, limit: int | None = None, source: str = GLUE_HUB) -> TextTask:
    """A GLUE task through ``datasets.load_dataset(source, name)``: ``source`` is the hub id or a local
    directory in the hub's layout (the offline tables use :func:`make_task`). ``split="validation"`` is
    the task's GLUE dev split (MNLI: validation_matched); ``limit`` None keeps every row."""
    from data.hub import load_dataset_source

    if name not in GLUE_FIELDS:
        raise ValueError(f"GLUE task {name!r} is not known; choose one of: {', '.join(GLUE_FIELDS)}")
    if split == "validation":
        split = GLUE_DEV.get(name, split)
    ds = load_dataset_source(source, name, split=split)
    if limit:
        ds = ds.select(range(min(limit, len(ds))))
    first, second = GLUE_FIELDS[name]
    texts = [(r[first], r[second]) if second else r[first] for r in ds]
    labels = np.array(ds["label"], dtype=np.int64)
    feature = ds.features["label"]
    # the label's ClassLabel (as the hub stores it) gives the class count even when a slice misses one
    num_classes = getattr(feature, "num_classes", None) or int(labels.max()) + 1
    return TextTask(name, GLUE_TRACKS[name], second is not None, texts, labels, int(num_classes))
