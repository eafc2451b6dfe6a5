"""The shared instruction-data layer: template text, record files, the generated dataset, composition."""

from __future__ import annotations

import json
import re
import sys
from collections import Counter

import pytest

from data.instructions.generated import (
    FAMILIES,
    composition,
    exact_match,
    generate,
    generate_eval,
)
from data.instructions.records import InstructionRecord, load_records, save_records
from data.instructions.template import RESPONSE_MARKER, format_prompt

# ------------------------------------------------------------------------------------------- template


def test_prompt_with_and_without_input():
    with_input = InstructionRecord(id="0", instruction="Add the numbers.", input="2 and 3", output="5")
    assert format_prompt(with_input) == (
        "Below is an instruction that describes a task, paired with an input that provides further context. "
        "Write a response that appropriately completes the request.\n\n"
        "### Instruction:\nAdd the numbers.\n\n### Input:\n2 and 3\n\n### Response:\n"
    )
    without = InstructionRecord(id="1", instruction="Say hi.", output="hi")
    assert format_prompt(without) == (
        "Below is an instruction that describes a task. "
        "Write a response that appropriately completes the request.\n\n"
        "### Instruction:\nSay hi.\n\n### Response:\n"
    )
    assert RESPONSE_MARKER == "### Response:"
    assert format_prompt(with_input).rstrip("\n").endswith(RESPONSE_MARKER)


# -------------------------------------------------------------------------------------------- records


def test_jsonl_round_trip(tmp_path):
    records = generate(30, seed=1)
    path = tmp_path / "sub" / "data.jsonl"
    save_records(path, records)
    assert load_records(str(path)) == records
    assert load_records(str(path), limit=5) == records[:5]
    assert [p.name for p in path.parent.iterdir()] == ["data.jsonl"]  # no temp file left behind


def test_json_list_file(tmp_path):
    path = tmp_path / "data.json"
    path.write_text(
        json.dumps(
            [
                {"instruction": "Say hi.", "output": "hi"},
                {"id": "x", "instruction": "Add.", "input": "1 and 2", "output": "3", "extra": 1},
            ],
            indent=2,
        )
    )
    first, second = load_records(str(path))
    assert first == InstructionRecord(id="0", instruction="Say hi.", output="hi", quality="unknown")
    assert (second.id, second.input, second.output, second.corrupted) == ("x", "1 and 2", "3", False)


def _jsonl(tmp_path, lines: list[str]):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_malformed_jsonl_names_file_and_line(tmp_path):
    ok = json.dumps({"instruction": "a", "output": "b"})
    path = _jsonl(tmp_path, [ok, ok, '{"instruction": "a", "output": '])
    with pytest.raises(ValueError, match=r"bad\.jsonl: line 3: invalid JSON"):
        load_records(path)


def test_missing_output_names_the_field(tmp_path):
    path = _jsonl(tmp_path, [json.dumps({"instruction": "a"})])
    with pytest.raises(ValueError, match=r"bad\.jsonl: line 1: missing 'output'"):
        load_records(path)


def test_not_an_object_and_non_string_field(tmp_path):
    with pytest.raises(ValueError, match=r"line 2: expected a JSON object, got list"):
        load_records(_jsonl(tmp_path, [json.dumps({"instruction": "a", "output": "b"}), "[1, 2]"]))
    with pytest.raises(ValueError, match=r"field 'output' must be a string, got int"):
        load_records(_jsonl(tmp_path, [json.dumps({"instruction": "a", "output": 3})]))


def test_json_record_error_names_index_and_line(tmp_path):
    path = tmp_path / "data.json"
    path.write_text(json.dumps([{"instruction": "a", "output": "b"}, {"instruction": "c"}], indent=2))
    with pytest.raises(ValueError, match=r"data\.json: record 1 \(line 6\): missing 'output'"):
        load_records(str(path))
    path.write_text('[\n  {"instruction": "a",\n   "output": }\n]')
    with pytest.raises(ValueError, match=r"data\.json: line 3: invalid JSON"):
        load_records(str(path))


class _FakeRows:
    """Just enough of a `datasets.Dataset` for load_records: column_names, len, select, iteration."""

    def __init__(self, rows: list[dict]):
        self.rows, self.column_names = rows, list(rows[0])

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    def select(self, indices):
        return _FakeRows([self.rows[i] for i in indices])


def test_hub_schemas_are_mapped(monkeypatch):
    hub = {
        "tatsu-lab/alpaca": [{"instruction": "a", "input": "b", "output": "c", "text": "..."}],
        "databricks/databricks-dolly-15k": [
            {"instruction": "a", "context": "b", "response": "c", "category": "open_qa"}
        ],
        "WizardLMTeam/WizardLM_evol_instruct_70k": [{"instruction": "a", "output": "c"}],
        "some/chat": [{"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "c"}]}],
        "some/other": [{"prompt": "a", "completion": "c"}],
    }
    fake = type(sys)("datasets")
    fake.load_dataset = lambda name, split: _FakeRows(hub[name])
    monkeypatch.setitem(sys.modules, "datasets", fake)
    alpaca, dolly, wizard, chat = (load_records(name)[0] for name in list(hub)[:4])
    assert (alpaca.instruction, alpaca.input, alpaca.output, alpaca.quality) == ("a", "b", "c", "unknown")
    assert (dolly.input, dolly.output, dolly.family) == ("b", "c", "open_qa")
    assert (wizard.input, wizard.output) == ("", "c")
    assert (chat.instruction, chat.output) == ("a", "c")
    with pytest.raises(ValueError, match=r"some/other: columns \['prompt', 'completion'\] match no known"):
        load_records("some/other")


# ------------------------------------------------------------------------------------------ generator


def test_generator_is_deterministic_per_seed():
    assert generate(300, seed=3) == generate(300, seed=3)
    assert generate(300, seed=3) != generate(300, seed=4)
    assert generate_eval(5, seed=3) == generate_eval(5, seed=3)
    assert [r.id for r in generate(3, seed=0)] == ["gen-000000", "gen-000001", "gen-000002"]


@pytest.fixture(scope="module")
def train():
    return generate(2000, seed=0)


def test_clean_outputs_match_and_corrupted_do_not(train):
    for r in train:
        if r.quality == "clean":
            assert r.output == r.reference and exact_match(r.output, r.reference), r
        else:
            assert r.corrupted and not exact_match(r.output, r.reference), r


def test_corrupted_share_and_kinds(train):
    corrupted = [r for r in train if r.corrupted]
    assert abs(len(corrupted) / len(train) - 0.2) <= 0.02
    kinds = Counter(r.quality for r in corrupted)
    assert set(kinds) == {"wrong", "irrelevant", "truncated"}
    assert max(kinds.values()) - min(kinds.values()) <= 1
    irrelevant = [r for r in corrupted if r.quality == "irrelevant"]
    answers = {(r.family, r.reference) for r in train}
    assert all(any(f != r.family and a == r.output for f, a in answers) for r in irrelevant)
    assert not any(r.corrupted for r in generate(200, seed=0, corrupt_share=0.0))


def test_families_unbalanced_and_many(train):
    counts = Counter(r.family for r in train)
    assert len(counts) >= 12
    assert max(counts.values()) / min(counts.values()) >= 5
    only = generate(100, seed=0, family_weights={"add": 1.0, "reverse_word": 1.0})
    assert Counter(r.family for r in only) == {"add": 50, "reverse_word": 50}
    with pytest.raises(ValueError, match="unknown task families"):
        generate(10, seed=0, family_weights={"nope": 1.0})


def test_instruction_wording_varies(train):
    for family in FAMILIES:
        shapes = {
            re.sub(r"'[^']*'|\d+", "_", r.instruction.split(":")[0]) for r in train if r.family == family
        }
        assert len(shapes) >= 2, family


def test_eval_balanced_clean_and_held_out(train):
    held_out = generate_eval(20, seed=0)
    counts = Counter(r.family for r in held_out)
    assert set(counts) == set(FAMILIES) and set(counts.values()) == {20}
    assert all(r.quality == "clean" and r.output == r.reference for r in held_out)
    assert len({r.id for r in held_out}) == len(held_out)
    train_pairs = {(r.instruction, r.input) for r in train}
    train_pairs |= {(r.instruction, r.input) for r in generate(2000, seed=0, corrupt_share=0.5)}
    assert not train_pairs & {(r.instruction, r.input) for r in held_out}


def _args(record: InstructionRecord) -> str:
    """The task's data: the input when present, else the instruction's text after its colon."""
    return record.input or record.instruction.split(": ", 1)[1]


def test_answers_against_independent_computation(train):
    by_family = {f: [r for r in train if r.family == f and not r.corrupted][:10] for f in FAMILIES}
    for r in by_family["sort_words"]:
        assert r.reference.split() == sorted(_args(r).split(), key=str.lower)
    for r in by_family["add"]:
        a, b = map(int, re.findall(r"\d+", r.instruction + " " + r.input))
        assert int(r.reference) == a + b
    for r in by_family["count_letter"]:
        letter, word = sorted(
            re.findall(r"'([a-z]+)'", r.instruction) + ([r.input] if r.input else []), key=len
        )
        assert int(r.reference) == sum(c == letter for c in word)
    for r in by_family["to_json_list"]:
        assert json.loads(r.reference) == _args(r).split()
    for r in by_family["uppercase"]:
        word = r.input or re.findall(r"'([a-z]+)'", r.instruction)[0]
        assert r.reference == word.upper()


def test_exact_match_normalisation():
    assert exact_match("  elbat. ", "elbat")
    assert exact_match("Elbat", "elbat")  # lowercase references: case-insensitive
    assert not exact_match("table", "TABLE")  # case is the task
    assert exact_match("Hello   World", "Hello World")
    assert not exact_match("elbat x", "elbat")


# ---------------------------------------------------------------------------------------- composition


def test_composition_hand_computed():
    def rec(i: int, family: str | None, quality: str) -> InstructionRecord:
        return InstructionRecord(id=str(i), instruction="i", output="o", family=family, quality=quality)

    records = [
        rec(0, "add", "clean"),
        rec(1, "add", "wrong"),
        rec(2, "add", "clean"),
        rec(3, "uppercase", "truncated"),
        rec(4, None, "unknown"),
    ]
    shares = composition(records)  # the shares are computed (count / 5): compared with a tolerance
    assert set(shares) == {"count", "family_share", "corrupted_share", "kind_share"} and shares["count"] == 5
    assert shares["family_share"] == pytest.approx({"add": 0.6, "unknown": 0.2, "uppercase": 0.2})
    assert shares["corrupted_share"] == pytest.approx(0.4)
    assert shares["kind_share"] == pytest.approx({"wrong": 0.2, "irrelevant": 0.0, "truncated": 0.2})
    assert composition([])["count"] == 0


# ---------------------------------------------------------------- the four test sets (issue 13)


def test_the_four_official_test_sets_load_in_their_own_schemas(tmp_path) -> None:
    from data.instructions.test_sets import OFFICIAL_URLS, SCHEMAS, load_test_set, load_test_sets
    from tests.paper.standins import official_test_sets

    files = official_test_sets(tmp_path, n=4)
    raw = {name: [json.loads(line) for line in path.read_text().splitlines()] for name, path in files.items()}
    records = load_test_sets({name: str(path) for name, path in files.items()})
    assert [r.family for r in records] == [n for n in SCHEMAS for _ in range(4)]
    by_set = {name: [r for r in records if r.family == name] for name in SCHEMAS}
    assert [r.instruction for r in by_set["vicuna"]] == [x["text"] for x in raw["vicuna"]]
    assert [r.instruction for r in by_set["koala"]] == [x["prompt"] for x in raw["koala"]]
    assert [r.instruction for r in by_set["wizardlm"]] == [x["Instruction"] for x in raw["wizardlm"]]
    sinstruct = by_set["sinstruct"]
    assert [r.instruction for r in sinstruct] == [x["instruction"] for x in raw["sinstruct"]]
    assert [r.input for r in sinstruct] == [x["instances"][0]["input"] for x in raw["sinstruct"]]
    assert by_set["vicuna"][0].id == "vicuna/1" and by_set["koala"][0].id == "koala/koala_1"
    assert all(r.reference is None and r.output == "" for r in records)
    assert len(load_test_set("koala", str(files["koala"]), limit=2)) == 2
    assert {name: s.size for name, s in SCHEMAS.items()} == {
        "vicuna": 80,
        "koala": 180,
        "wizardlm": 218,
        "sinstruct": 252,
    }
    assert OFFICIAL_URLS["vicuna"].endswith("/evaluation/test_data/vicuna_test_set.jsonl")


def test_a_test_set_in_another_schema_is_refused_with_its_file_and_line(tmp_path) -> None:
    from data.instructions.test_sets import TestSetError, load_test_set

    path = tmp_path / "koala.jsonl"
    path.write_text(json.dumps({"id": 1, "prompt": "hi"}) + "\n" + json.dumps({"id": 2, "text": "x"}) + "\n")
    with pytest.raises(TestSetError, match=r"koala.jsonl, line 2.*'prompt'.*id, text"):
        load_test_set("koala", str(path))
    with pytest.raises(TestSetError, match="does not exist"):
        load_test_set("vicuna", str(tmp_path / "missing.jsonl"))
