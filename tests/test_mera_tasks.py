"""The generated text tasks of MerA's offline tracks (data/text_tasks.py): labels mean what they say."""

from __future__ import annotations

import re

import numpy as np
import pytest

from data.text_tasks import (
    NEGATIVE,
    POSITIVE,
    SOURCES,
    SPECS,
    TARGETS,
    make_task,
    task_adjectives,
    task_words,
)


def test_tasks_are_balanced_deterministic_and_seeded() -> None:
    a, b, c = (
        make_task("entail/box", 40, seed=1),
        make_task("entail/box", 40, seed=1),
        make_task("entail/box", 40, 2),
    )
    assert a.texts == b.texts and np.array_equal(a.labels, b.labels)
    assert a.texts != c.texts
    assert a.labels.sum() == 20 and a.pair and len(a) == 40


def test_every_task_has_its_own_words_and_each_track_a_held_out_target() -> None:
    words = {name: set(task_words(name)) for name in SPECS}
    names = list(words)
    for i, x in enumerate(names):
        assert len(words[x]) > 100
        for y in names[i + 1 :]:
            assert not words[x] & words[y], (x, y)
    assert {SPECS[t].track for t in TARGETS} == {SPECS[s].track for s in SOURCES}
    assert not set(TARGETS) & set(SOURCES)
    positive = [set(task_adjectives(t)[0]) for t in SPECS if SPECS[t].track == "sentiment"]
    assert not positive[0] & positive[-1]


def test_entailment_label_is_membership_of_the_hypothesis_item() -> None:
    task = make_task("entail/list", 60, seed=0)
    for (premise, hypothesis), y in zip(task.texts, task.labels, strict=True):
        items = set(re.findall(r"[a-z]+", premise)) - {"the", "list", "names", "and"}
        item = hypothesis.split()[0]
        assert (item in items) == bool(y)


def test_paraphrase_label_is_same_word_set() -> None:
    task = make_task("similar/team", 60, seed=0)
    template = {"works", "for", "on"}
    for (first, second), y in zip(task.texts, task.labels, strict=True):
        same = set(re.findall(r"[a-z]+", first)) - template == set(re.findall(r"[a-z]+", second)) - template
        assert same == bool(y)


@pytest.mark.parametrize("name", ["sentiment/review", "sentiment/talk"])
def test_sentiment_label_is_polarity_flipped_by_negation(name: str) -> None:
    task = make_task(name, 80, seed=0)
    assert not task.pair
    positive_template = SPECS[name].templates[0]
    for text, y in zip(task.texts, task.labels, strict=True):
        adj = text.rstrip(".").split()[-1]
        assert adj in POSITIVE or adj in NEGATIVE
        negated = not re.fullmatch(
            re.escape(positive_template).replace(r"\{n\}", "[a-z]+").replace(r"\{adj\}", "[a-z]+"), text
        )
        assert ((adj in POSITIVE) != negated) == bool(y), text


def test_unknown_task_names_the_choices() -> None:
    with pytest.raises(ValueError, match="entail/box"):
        make_task("entail/nope", 4, 0)
