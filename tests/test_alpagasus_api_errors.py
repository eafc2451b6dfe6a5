"""API errors that retrying cannot fix, against the loopback OpenAI-compatible server (data.llm.serve)
scripted to answer with them: a model the endpoint does not serve (404) or a refused key (401) stops the
grading after one request, naming the model and the endpoint; a 400 on one record is recorded against
that record and the others are graded."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from data.config import LLMClientConfig
from data.instructions.records import InstructionRecord
from data.llm.client import ChatRequest, ModelUnavailable, make_client
from data.llm.serve import HTTPStatusError, make_server, serve_in_thread
from methods.alpagasus.grading import grade


class Scripted:
    """A backend for make_server: ``answer(request)`` returns the reply or raises HTTPStatusError."""

    identity = "scripted"

    def __init__(self, answer: Callable[[ChatRequest], str]) -> None:
        self.answer, self.seen, self._lock = answer, [], threading.Lock()

    def complete(self, request: ChatRequest) -> str:
        with self._lock:
            self.seen.append(request.messages[-1]["content"])
        return self.answer(request)


@pytest.fixture
def serve() -> Iterator[Callable[[Scripted], str]]:
    servers = []

    def start(backend: Scripted) -> str:
        server = make_server(backend)
        serve_in_thread(server)
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/v1"

    yield start
    for server in servers:
        server.shutdown()


def records(n: int) -> list[InstructionRecord]:
    return [InstructionRecord(f"r{i}", f"Say {i}.", "", f"{i}") for i in range(n)]


def client(url: str, tmp_path: Path, model: str = "gpt-3.5-turbo-0301"):
    cfg = LLMClientConfig(backend="openai", model=model, base_url=url, max_retries=2, concurrency=4)
    return make_client(cfg, tmp_path / "replies.sqlite")


@pytest.mark.parametrize(
    ("status", "message", "hint"),
    [
        (404, "The model `gpt-3.5-turbo-0301` does not exist", "does not exist"),
        (401, "Incorrect API key provided", "API key"),
    ],
)
def test_a_refused_model_stops_after_one_request_naming_model_and_endpoint(
    serve, tmp_path: Path, status: int, message: str, hint: str
) -> None:
    def refuse(request: ChatRequest) -> str:
        raise HTTPStatusError(status, message)

    backend = Scripted(refuse)
    url = serve(backend)
    with pytest.raises(ModelUnavailable) as raised:
        grade(client(url, tmp_path), records(40))
    text = str(raised.value)
    assert "gpt-3.5-turbo-0301" in text and url in text and hint in text and str(status) in text
    assert len(backend.seen) == 1  # the probe: no other record was sent


def test_a_400_on_one_record_is_recorded_against_it_and_the_others_are_graded(serve, tmp_path: Path) -> None:
    def answer(request: ChatRequest) -> str:
        if "Say 3." in request.messages[-1]["content"]:
            raise HTTPStatusError(400, "This request was rejected by the content filter")
        return "5\nAccurate."

    backend = Scripted(answer)
    url = serve(backend)
    grades = grade(client(url, tmp_path), records(8))
    assert [g.id for g in grades] == [f"r{i}" for i in range(8)]
    bad = grades[3]
    assert bad.score is None and "400" in bad.error and "content filter" in bad.error
    assert all(g.score == pytest.approx(5.0) and g.error is None for g in grades if g.id != "r3")
    assert len(backend.seen) == 8  # the 400 was not retried
    # the rejected record is not cached: a re-run asks for it again, and only for it
    again = grade(client(url, tmp_path), records(8))
    assert len(backend.seen) == 9 and again[3].error is not None


def test_a_400_on_every_first_request_is_the_model_format_not_a_record(serve, tmp_path: Path) -> None:
    """A request every record fails (an unsupported parameter) is found by the probe, not 52k times."""

    def reject(request: ChatRequest) -> str:
        raise HTTPStatusError(400, "Unsupported parameter: 'max_tokens'")

    backend = Scripted(reject)
    url = serve(backend)
    with pytest.raises(ModelUnavailable, match="max_tokens"):
        grade(client(url, tmp_path), records(50))
    assert len(backend.seen) == 3
