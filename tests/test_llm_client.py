"""The LLM client against real HTTP servers on loopback: an OpenAI-compatible server over SmolLM2, and
small misbehaving servers for retries and timeouts. The client is the real `openai` package."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from data.llm.client import ChatRequest, LLMClient, LocalBackend, OpenAIBackend
from data.llm.loader import load_causal_lm, offline_model
from data.llm.response_cache import ResponseCache
from data.llm.serve import make_server, serve_in_thread

SMOLLM2 = offline_model("smollm2_135m")
QUESTIONS = ["What is 2 + 3?", "Name a colour.", "Say hello in French."]


def ask(question: str) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": question}], max_tokens=8)


@pytest.fixture(scope="module")
def smollm2() -> LocalBackend:
    lm = load_causal_lm(SMOLLM2)
    return LocalBackend(lm.model, lm.tokenizer, identity=SMOLLM2.name, batch_size=1)


@pytest.fixture
def smollm2_server(smollm2: LocalBackend) -> Iterator[ThreadingHTTPServer]:
    server = make_server(smollm2)
    serve_in_thread(server)
    yield server
    server.shutdown()


def url(server: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/v1"


def test_http_backend_matches_the_local_model_and_cached_rerun_makes_no_calls(
    smollm2: LocalBackend, smollm2_server: ThreadingHTTPServer, tmp_path: Path
) -> None:
    direct = [smollm2.complete(ask(q)) for q in QUESTIONS]
    cache = ResponseCache(tmp_path / "responses.sqlite")
    client = LLMClient(OpenAIBackend(url(smollm2_server), model="smollm2"), cache=cache, concurrency=3)
    answers = client.complete([ask(q) for q in QUESTIONS])
    assert answers == direct and all(answers)
    assert client.calls == 3 and smollm2_server.requests_served == 3 and len(cache) == 3

    again = LLMClient(OpenAIBackend(url(smollm2_server), model="smollm2"), cache=ResponseCache(cache.path))
    assert again.complete([ask(q) for q in QUESTIONS]) == answers
    assert again.calls == 0 and smollm2_server.requests_served == 3  # resumed entirely from disk


def test_local_backend_batches_and_caches(smollm2: LocalBackend, tmp_path: Path) -> None:
    client = LLMClient(smollm2, cache=ResponseCache(tmp_path / "c.sqlite"))
    first = client.complete([ask(q) for q in QUESTIONS[:2]])
    both = client.complete([ask(q) for q in QUESTIONS])
    assert both[:2] == first and client.calls == 3  # only the new question was generated


class Scripted(BaseHTTPRequestHandler):
    """Answers with the next scripted (status, delay) and records each request's headers."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        server = self.server
        server.seen.append({k.lower(): v for k, v in self.headers.items()})
        status, delay = server.script[min(len(server.seen) - 1, len(server.script) - 1)]
        time.sleep(delay)
        body = {"error": {"message": "scripted failure"}}
        if status == 200:
            message = {"role": "assistant", "content": getattr(server, "reply", "4")}
            body = {
                "id": "x",
                "object": "chat.completion",
                "created": 0,
                "model": "m",
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            }
        data = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
            pass

    def log_message(self, *args: object) -> None:
        pass


def scripted_server(script: list[tuple[int, float]]) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    server.script, server.seen = script, []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_server_errors_are_retried_with_capped_backoff() -> None:
    server = scripted_server([(503, 0.0), (503, 0.0), (200, 0.0)])
    client = LLMClient(OpenAIBackend(url(server), model="m"), backoff_base_s=0.05, backoff_max_s=0.08)
    start = time.monotonic()
    assert client.complete([ask("2 + 2?")]) == ["4"]
    assert client.calls == 3 and len(server.seen) == 3
    assert 0.05 + 0.08 <= time.monotonic() - start < 2.0  # waited 0.05 then min(0.1, cap 0.08)
    server.shutdown()


def test_a_dead_endpoint_gives_up_with_a_clear_error() -> None:
    server = scripted_server([(500, 0.0)])
    client = LLMClient(OpenAIBackend(url(server), model="m"), max_retries=2, backoff_base_s=0.01)
    with pytest.raises(RuntimeError, match="gave up after 3 attempts"):
        client.complete([ask("2 + 2?")])
    assert len(server.seen) == 3
    server.shutdown()


def test_timeouts_are_retried_then_reported() -> None:
    server = scripted_server([(200, 1.0)])
    backend = OpenAIBackend(url(server), model="m", timeout_s=0.2)
    with pytest.raises(RuntimeError, match=r"gave up after 2 attempts.*Timeout|gave up after 2 attempts"):
        LLMClient(backend, max_retries=1, backoff_base_s=0.01).complete([ask("slow?")])
    server.shutdown()


def test_client_errors_are_not_retried() -> None:
    """A 400 is not retried; it is recorded against its request (issue 13: it no longer stops the run)."""
    server = scripted_server([(400, 0.0)])
    client = LLMClient(OpenAIBackend(url(server), model="m"), backoff_base_s=0.01)
    assert client.complete([ask("bad")]) == [""]
    assert "scripted failure" in client.errors[0]
    assert len(server.seen) == 1
    server.shutdown()


def test_api_key_comes_from_the_environment_and_is_not_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPROLAB_TEST_KEY", "sk-test-123")
    server = scripted_server([(200, 0.0)])
    backend = OpenAIBackend(url(server), model="m", api_key_env="REPROLAB_TEST_KEY")
    LLMClient(backend).complete([ask("hi")])
    assert server.seen[0]["authorization"] == "Bearer sk-test-123"
    assert "sk-test-123" not in repr(backend) and "sk-test-123" not in backend.identity
    server.shutdown()


def test_a_local_model_without_a_chat_template_gets_the_vicuna_format(tmp_path) -> None:
    """Vicuna's 2023 tokenizers have no chat template: the local backend falls back to its conversation
    format (with the BOS) instead of raising."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from data.llm.client import VICUNA_SYSTEM, ChatRequest, LocalBackend, chat_text
    from tests.paper.standins import tiny_causal_lm

    path = tiny_causal_lm(tmp_path / "llama", "llama")
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert not tokenizer.chat_template
    text, add_special = chat_text(tokenizer, [{"role": "user", "content": "Is it true?"}])
    assert (text, add_special) == (f"{VICUNA_SYSTEM} USER: Is it true? ASSISTANT:", True)
    system, _ = chat_text(
        tokenizer, [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    )
    assert system == "Be brief. USER: Hi ASSISTANT:"
    backend = LocalBackend(AutoModelForCausalLM.from_pretrained(path), tokenizer, "tiny")
    replies = backend.complete_many([ChatRequest(messages=[{"role": "user", "content": "Hi"}], max_tokens=3)])
    assert len(replies) == 1 and isinstance(replies[0], str)
