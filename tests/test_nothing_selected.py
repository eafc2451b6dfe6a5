"""Selecting nothing fails at the stage that produced nothing (issue 18, item 7), naming the file or the
cause, instead of reaching the tune stage and failing with "num_samples=0"."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hydra.utils import instantiate

from data.instructions.selection import NothingSelected
from runners.context import RunContext
from runners.validate import compose_config


def pipeline(tmp_path: Path, overrides: list[str]) -> tuple[Any, RunContext]:
    cfg = compose_config(["scale=smoke", *overrides])
    out = tmp_path / "run"
    out.mkdir()
    return instantiate(cfg.method, _convert_="all"), RunContext(cfg=cfg, out_dir=out)


@pytest.mark.parametrize("method", ["ifd", "alpagasus"])
def test_an_empty_data_file_fails_in_the_data_stage_naming_the_file(tmp_path: Path, method: str) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    method_, ctx = pipeline(tmp_path, [f"method={method}", f"method.data={empty}"])
    with pytest.raises(ValueError) as err:  # the record loader's own message, or NothingSelected
        method_.stage_data(ctx)
    assert "empty.jsonl" in str(err.value)
    assert not (ctx.out_dir / "train.jsonl").exists()  # nothing half-made for the next stages


def test_a_source_that_yields_no_records_fails_in_the_data_stage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever the loader accepts (a hub split with no rows, a file it reads as empty), 0 records stop
    the data stage with the source named."""
    monkeypatch.setattr("data.instructions.selection.load_records", lambda *a, **k: [])
    method, ctx = pipeline(tmp_path, ["method=ifd", "method.data=org/empty-set"])
    with pytest.raises(NothingSelected, match=r"method.data='org/empty-set' has no records"):
        method.stage_data(ctx)


class Grader(BaseHTTPRequestHandler):
    """An OpenAI-compatible grader that always replies ``server.reply``."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        message = {"role": "assistant", "content": self.server.reply}
        body = {
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": "m",
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        }
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def graded_by(tmp_path: Path, reply: str) -> tuple[Any, RunContext, ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Grader)
    server.reply = reply
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    method, ctx = pipeline(
        tmp_path,
        [
            "method=alpagasus",
            "method.n_train=6",
            "method.keep_share=null",
            "method.grading=generate",
            "method.grader.backend=openai",
            f"method.grader.base_url={url}",
            "method.grader.model=grader-x",
            f"method.response_cache={tmp_path / 'replies.sqlite'}",
        ],
    )
    method.stage_data(ctx)
    return method, ctx, server


def test_a_grader_with_no_parsable_score_fails_in_the_grade_stage(tmp_path: Path) -> None:
    method, ctx, server = graded_by(tmp_path, "This response looks fine to me.")
    with pytest.raises(NothingSelected) as err:
        method.stage_grade(ctx)
    server.shutdown()
    message = str(err.value)
    assert "the grader's 6 replies had no parsable score" in message
    assert "first reply: 'This response looks fine to me.'" in message and "grader-x" in message
    assert (ctx.out_dir / "grades.jsonl").exists()  # every reply kept for a look


def test_grades_below_the_threshold_fail_in_the_select_stage(tmp_path: Path) -> None:
    method, ctx, server = graded_by(tmp_path, "2\nThe answer is wrong.")
    method.stage_grade(ctx)
    server.shutdown()
    with pytest.raises(NothingSelected) as err:
        method.stage_select(ctx)
    message = str(err.value)
    assert "kept 0 of 6 records" in message and "method.threshold=4.5" in message
    assert "the best of the 6 parsed scores is 2" in message and "method.keep_share" in message


def test_tune_refuses_an_empty_selection_with_a_clear_message() -> None:
    from data.config import TuningConfig
    from data.instructions.tuning import tune

    with pytest.raises(ValueError, match="no records to train on"):
        tune(None, None, [], TuningConfig(), seed=0)
