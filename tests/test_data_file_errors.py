"""Data-file errors name the file, the line and the right column, and a local file never goes to the hub."""

from __future__ import annotations

from pathlib import Path

import pytest

from data.instructions import records
from data.instructions.records import is_local_source, load_records


def test_a_jsonl_error_at_the_end_of_a_line_reports_its_column_not_1(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(
        '{"instruction": "a", "output": "b"}\n{"instruction": "c", "output": \n', encoding="utf-8"
    )
    # The value is missing right after `"output": ` (31 characters): column 32 of line 2.
    with pytest.raises(
        ValueError, match=r"^bad\.jsonl: line 2: invalid JSON \(Expecting value, column 32\)$"
    ):
        load_records(str(path))


def test_a_jsonl_error_inside_a_line_reports_its_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"instruction": "a",, "output": "b"}\r\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"line 1: invalid JSON \(.*column 21\)"):
        load_records(str(path))


@pytest.mark.parametrize(("suffix", "content"), [(".csv", "instruction,output\na,b\n"), (".parquet", "")])
def test_a_local_file_of_another_format_is_refused_without_the_hub(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str, content: str
) -> None:
    def no_hub(*args: object) -> None:
        raise AssertionError("a local file went to the hub loader")

    monkeypatch.setattr(records, "_read_hub", no_hub)
    path = tmp_path / f"records{suffix}"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(
        ValueError, match=rf"records\{suffix}: unsupported suffix '\{suffix}'.*\.json.*\.jsonl"
    ):
        load_records(str(path))


def test_a_missing_local_file_says_no_such_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"no such file: .*gone\.jsonl"):
        load_records(str(tmp_path / "gone.jsonl"))


@pytest.mark.parametrize(
    ("name", "message"), [("e.jsonl", "holds no records"), ("e.json", "the file is empty")]
)
def test_an_empty_file_is_refused(tmp_path: Path, name: str, message: str) -> None:
    (tmp_path / name).write_text("\n", encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        load_records(str(tmp_path / name))


@pytest.mark.parametrize(
    ("source", "local"),
    [
        ("tatsu-lab/alpaca", False),
        ("databricks/databricks-dolly-15k", False),
        ("WizardLM/WizardLM_evol_instruct_70k", False),
        ("data/alpaca.json", True),
        ("some/deep/path", True),
        ("./alpaca", True),
        ("~/alpaca.jsonl", True),
        ("records.csv", True),
    ],
)
def test_hub_ids_and_paths_are_told_apart(source: str, local: bool) -> None:
    assert is_local_source(source) is local
