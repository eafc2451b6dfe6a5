"""One instruction-tuning record, and loading/saving sets of them (local JSON/JSONL or a hub dataset)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from runners.atomic import write_atomic

# "clean" and the three corruption kinds come from the generator; real data is "unknown".
QUALITIES = ("clean", "wrong", "irrelevant", "truncated", "unknown")
CORRUPTION_KINDS = ("wrong", "irrelevant", "truncated")


@dataclass(frozen=True)
class InstructionRecord:
    """An (instruction, input, output) triple. Generated records also carry their task family, whether the
    output was corrupted on purpose, and the correct answer, so a selection's quality can be measured."""

    id: str
    instruction: str
    input: str = ""
    output: str = ""
    family: str | None = None
    quality: str = "clean"
    reference: str | None = None

    def __post_init__(self) -> None:
        if self.quality not in QUALITIES:
            raise ValueError(f"record {self.id!r}: quality {self.quality!r} is not one of {QUALITIES}")

    @property
    def corrupted(self) -> bool:
        return self.quality not in ("clean", "unknown")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_REQUIRED = ("instruction", "output")
_OPTIONAL_STR = ("input", "family", "reference", "quality")


def record_from_dict(obj: Any, default_id: str, where: str) -> InstructionRecord:
    """Validate one raw object; `where` (file and line, or hub row) prefixes every error message.

    Unknown keys are ignored (hub dumps carry extra columns such as ``text``). ``input``, ``family`` and
    ``reference`` may be null. An integer ``id`` is accepted and turned into a string; every other field
    must be a string. Without a ``quality`` the record is real data of unknown quality."""
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    for key in _REQUIRED:
        if key not in obj:
            raise ValueError(f"{where}: missing {key!r}")
        if not isinstance(obj[key], str):
            raise ValueError(f"{where}: field {key!r} must be a string, got {type(obj[key]).__name__}")
    for key in _OPTIONAL_STR:
        value = obj.get(key)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{where}: field {key!r} must be a string, got {type(value).__name__}")
    raw_id = obj.get("id", default_id)
    if isinstance(raw_id, bool) or not isinstance(raw_id, str | int):
        raise ValueError(f"{where}: field 'id' must be a string, got {type(raw_id).__name__}")
    quality = obj.get("quality") or "unknown"
    if quality not in QUALITIES:
        raise ValueError(f"{where}: field 'quality' is {quality!r}, expected one of {QUALITIES}")
    return InstructionRecord(
        id=str(raw_id),
        instruction=obj["instruction"],
        input=obj.get("input") or "",
        output=obj["output"],
        family=obj.get("family"),
        quality=quality,
        reference=obj.get("reference"),
    )


def load_records(source: str, split: str = "train", limit: int | None = None) -> list[InstructionRecord]:
    """Records from a local ``.json`` (a list of objects) or ``.jsonl`` file, or else from a hub dataset
    (``datasets.load_dataset(source, split=split)``, online only). `split` applies to the hub only.

    Ids must be unique: later stages (ratings, scores) are keyed by id, never by position."""
    if is_local_source(source):
        path = check_local_file(source)
        reader = _read_jsonl(path, limit) if path.suffix.lower() == ".jsonl" else _read_json(path, limit)
        records = list(reader)
        if not records and limit != 0:
            raise ValueError(
                f"{path.name}: the file holds no records (expected {_FORMATS[path.suffix.lower()]})"
            )
    else:
        records = _read_hub(source, split, limit)
    _check_unique_ids(records, source)
    return records


DATA_SUFFIXES = (".json", ".jsonl")
_FORMATS = {".json": "a JSON list of records", ".jsonl": "one JSON record a line"}
# Suffixes that mark a name as a file even when it does not exist (a hub id has none of them).
_FILE_SUFFIXES = (
    *DATA_SUFFIXES,
    ".csv",
    ".tsv",
    ".parquet",
    ".arrow",
    ".txt",
    ".gz",
    ".zip",
    ".xlsx",
    ".yaml",
)


def is_local_source(source: str) -> bool:
    """A file path rather than a hub dataset id (``name`` or ``org/name``): it exists, starts like a
    path (``.``, ``/``, ``~``), has more than one ``/`` or ends in a file suffix."""
    path = Path(source).expanduser()
    return (
        path.exists()
        or source.startswith((".", "/", "~"))
        or source.count("/") > 1
        or path.suffix.lower() in _FILE_SUFFIXES
    )


def check_local_file(source: str) -> Path:
    """The path of a local data file that exists, is a readable file and has a suffix we read;
    otherwise a ValueError saying which of these fails and what would be valid."""
    path = Path(source).expanduser()
    if not path.exists():
        raise ValueError(f"no such file: {source} (looked in {Path.cwd()})")
    if not path.is_file():
        raise ValueError(f"{source} is not a file")
    if not os.access(path, os.R_OK):
        raise ValueError(f"{source} is not readable (permission denied)")
    if path.suffix.lower() not in DATA_SUFFIXES:
        raise ValueError(
            f"{path.name}: unsupported suffix {path.suffix or '(none)'!r}; a data file is .json "
            "(a JSON list of records) or .jsonl (one JSON record a line), each record with "
            "'instruction', 'output' and optionally 'input'"
        )
    return path


def save_records(path: str | os.PathLike[str], records: Iterable[InstructionRecord]) -> None:
    """Write JSONL atomically (temp file in the same folder, then os.replace): no half-written file."""
    write_atomic(
        path, lambda f: f.writelines(json.dumps(r.to_dict(), ensure_ascii=False) + "\n" for r in records)
    )


def _read_jsonl(path: Path, limit: int | None) -> Iterator[InstructionRecord]:
    count = 0
    with path.open(encoding="utf-8-sig") as f:
        for line_no, line in enumerate(f, start=1):
            if limit is not None and count >= limit:
                return
            if not line.strip():
                continue
            where = f"{path.name}: line {line_no}"
            try:  # without its line end, or an error at the end of the line is reported at column 1
                obj = json.loads(line.rstrip("\r\n"))
            except json.JSONDecodeError as e:
                raise ValueError(f"{where}: invalid JSON ({e.msg}, column {e.colno})") from e
            yield record_from_dict(obj, str(count), where)
            count += 1


def _read_json(path: Path, limit: int | None) -> list[InstructionRecord]:
    text = path.read_text(encoding="utf-8-sig")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        if not text.strip():
            raise ValueError(f"{path.name}: the file is empty (expected {_FORMATS['.json']})") from None
        raise ValueError(f"{path.name}: line {e.lineno}: invalid JSON ({e.msg}, column {e.colno})") from e
    if not isinstance(data, list):
        raise ValueError(f"{path.name}: expected a JSON list of records, got {type(data).__name__}")
    lines = _item_lines(text)
    data = data if limit is None else data[:limit]
    return [
        record_from_dict(obj, str(i), f"{path.name}: record {i} (line {lines[i]})")
        for i, obj in enumerate(data)
    ]


def _item_lines(text: str) -> list[int]:
    """The 1-based line on which each top-level item of a (valid) JSON list starts."""
    decoder = json.JSONDecoder()
    whitespace = " \t\n\r\ufeff"
    i = text.index("[") + 1
    lines: list[int] = []
    while True:
        while text[i] in whitespace:
            i += 1
        if text[i] == "]":
            return lines
        lines.append(text.count("\n", 0, i) + 1)
        _, i = decoder.raw_decode(text, i)
        while text[i] in whitespace:
            i += 1
        if text[i] == ",":
            i += 1


def _check_unique_ids(records: list[InstructionRecord], source: str) -> None:
    seen: set[str] = set()
    for record in records:
        if record.id in seen:
            raise ValueError(f"{source}: duplicate id {record.id!r}")
        seen.add(record.id)


# --- hub datasets -------------------------------------------------------------------------------------------

_SCHEMAS = (
    "alpaca (instruction, input, output)",
    "dolly (instruction, context, response)",
    "WizardLM (instruction, output; or conversations)",
)


def _read_hub(source: str, split: str, limit: int | None) -> list[InstructionRecord]:
    from data.hub import load_dataset_source

    rows = load_dataset_source(source, split=split)
    if limit is not None:
        rows = rows.select(range(min(limit, len(rows))))
    columns = list(rows.column_names)
    to_record = _hub_mapper(source, columns)
    return [
        record_from_dict(to_record(row), str(i), f"{source} [{split}] row {i}") for i, row in enumerate(rows)
    ]


def _hub_mapper(source: str, columns: list[str]):
    """A function from a hub row to our raw record dict, picked from the dataset's columns."""
    cols = set(columns)
    carried = {key: key for key in ("id",) if key in cols}

    def base(row: dict) -> dict:
        return {k: row[v] for k, v in carried.items()}

    if {"instruction", "context", "response"} <= cols:  # databricks/databricks-dolly-15k
        return lambda row: {
            **base(row),
            "instruction": row["instruction"],
            "input": row["context"],
            "output": row["response"],
            "family": row.get("category"),
        }
    if {"instruction", "output"} <= cols:  # tatsu-lab/alpaca, WizardLM_evol_instruct_70k
        return lambda row: {
            **base(row),
            "instruction": row["instruction"],
            "input": row.get("input") or "",
            "output": row["output"],
        }
    if "conversations" in cols:  # WizardLM versions stored as chats
        return lambda row: {**base(row), **_first_exchange(row["conversations"])}
    raise ValueError(
        f"{source}: columns {columns} match no known instruction schema; "
        f"expected one of: {', '.join(_SCHEMAS)}"
    )


def _first_exchange(turns: list[dict]) -> dict:
    """The first human turn and the assistant turn that answers it (ShareGPT-style ``from``/``value`` or
    chat-style ``role``/``content``)."""
    instruction = output = None
    for turn in turns or []:
        role = turn.get("from", turn.get("role"))
        text = turn.get("value", turn.get("content"))
        if instruction is None and role in ("human", "user"):
            instruction = text
        elif instruction is not None and role in ("gpt", "assistant"):
            output = text
            break
    raw: dict = {}
    if instruction is not None:
        raw["instruction"] = instruction
    if output is not None:
        raw["output"] = output
    return raw
