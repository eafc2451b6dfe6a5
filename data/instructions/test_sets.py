"""The four open-ended test sets of AlpaGasus and IFD (Vicuna 80, Koala 180, WizardLM 218, Self-Instruct
252), read from the official repos' JSONL files by local path or URL, in their own schemas.

Each set names its question under another key, as the official generation scripts read them
(tianyi-lab/Cherry_LLM evaluation/generation/eva_generation.py, gpt4life/alpagasus generation/generation.py):
Vicuna ``text``, Koala ``prompt``, WizardLM ``Instruction``, Self-Instruct ``instruction`` with its one
instance's ``input``. The items become ``InstructionRecord``s with ``family`` the set's name and no
reference answer: the tuned models answer them and the pairwise judge compares the answers
(data.instructions.judge_runs).
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data.instructions.records import InstructionRecord


@dataclass(frozen=True)
class TestSetSchema:
    question_key: str
    id_key: str
    size: int  # the official file's number of items


# The official files, in tianyi-lab/Cherry_LLM evaluation/test_data/ (gpt4life/alpagasus test_data/ holds
# the same four). Their keys: the official scripts' prompt keys; the id keys as the files hold them.
SCHEMAS = {
    "vicuna": TestSetSchema("text", "question_id", 80),
    "koala": TestSetSchema("prompt", "id", 180),
    "wizardlm": TestSetSchema("Instruction", "idx", 218),
    "sinstruct": TestSetSchema("instruction", "id", 252),
}
OFFICIAL_BASE = "https://raw.githubusercontent.com/tianyi-lab/Cherry_LLM/main/evaluation/test_data"
OFFICIAL_URLS = {name: f"{OFFICIAL_BASE}/{name}_test_set.jsonl" for name in SCHEMAS}


class TestSetError(ValueError):
    """A test set that cannot be read or is not in its official schema (the message names the file)."""


def read_text(source: str) -> str:
    """A local file's or a URL's text (TestSetError naming the source when it cannot be had)."""
    if source.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(source, timeout=60) as response:
                return response.read().decode("utf-8")
        except OSError as ex:
            raise TestSetError(f"test set {source} could not be downloaded ({ex}); give a local path") from ex
    path = Path(source).expanduser()
    if not path.is_file():
        raise TestSetError(f"test set file {source} does not exist")
    return path.read_text(encoding="utf-8")


def record_from_item(name: str, item: dict[str, Any], line: int, source: str) -> InstructionRecord:
    """One official item as a record: the question under the set's key (Self-Instruct adds the input of
    its single instance, as the official generation does)."""
    schema = SCHEMAS[name]
    question = item.get(schema.question_key)
    if not isinstance(question, str):
        keys = ", ".join(sorted(item))
        raise TestSetError(
            f"{source}, line {line}: a {name} item holds its question under {schema.question_key!r}; "
            f"this one has keys {keys}"
        )
    context = ""
    if name == "sinstruct":
        instances = item.get("instances") or [{}]
        context = str(instances[0].get("input") or "")
    item_id = item.get(schema.id_key, line)
    return InstructionRecord(id=f"{name}/{item_id}", instruction=question, input=context, family=name)


def load_test_set(name: str, source: str | None = None, limit: int | None = None) -> list[InstructionRecord]:
    """The first ``limit`` items (all when None) of test set ``name`` from ``source`` (a JSONL path or
    URL; None: the official file's URL)."""
    if name not in SCHEMAS:
        raise TestSetError(f"test set {name!r} is not known; choose from {', '.join(SCHEMAS)}")
    source = source or OFFICIAL_URLS[name]
    records = []
    for line, text in enumerate(read_text(source).splitlines(), start=1):
        if not text.strip():
            continue
        try:
            item = json.loads(text)
        except json.JSONDecodeError as ex:
            raise TestSetError(f"{source}, line {line}: not JSON ({ex.msg})") from ex
        records.append(record_from_item(name, item, line, source))
        if limit is not None and len(records) >= limit:
            break
    if not records:
        raise TestSetError(f"test set {name} ({source}) has no items")
    return records


def load_test_sets(sources: dict[str, str | None], limit: int | None = None) -> list[InstructionRecord]:
    """Every configured test set, in config order (``{name: path or URL}``)."""
    return [r for name, source in sources.items() for r in load_test_set(name, source, limit)]
