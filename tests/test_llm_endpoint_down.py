"""A dead endpoint fails fast (issue 18, item 2): the queue is cancelled once the endpoint is judged down,
with one error that says how to resume, and one warning per retry round rather than per request."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from data.llm.client import ChatRequest, EndpointDown, LLMClient, OpenAIBackend
from data.llm.response_cache import ResponseCache


def ask(i: int) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": f"question {i}"}], max_tokens=4)


class DiesAfter(BaseHTTPRequestHandler):
    """Answers ``server.live`` requests, then dies: the listening socket closes (connections are refused)
    and requests already connected are dropped without a reply, as when the server process is killed."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        server = self.server
        with server.lock:
            server.served += 1
            alive = server.served <= server.live
            if not alive and not server.dead:
                server.dead = True
                server.socket.close()  # nothing listens any more: later connections are refused
        if not alive:
            self.close_connection = True
            return  # no reply at all: the client sees the connection drop
        message = {"role": "assistant", "content": "4"}
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


def dying_server(live: int) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), DiesAfter)
    server.live, server.served, server.dead, server.lock = live, 0, False, threading.Lock()
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_port_with_nothing_listening_fails_once_with_one_warning_per_round(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    client = LLMClient(
        OpenAIBackend(url, model="grader-x"),
        concurrency=8,
        max_retries=50,
        backoff_base_s=0.05,
        backoff_max_s=0.1,
        down_after=3,
    )
    with caplog.at_level(logging.WARNING, logger="reprolab"), pytest.raises(EndpointDown) as err:
        client.complete([ask(i) for i in range(200)])
    message = str(err.value)
    assert url in message and "grader-x" in message
    assert "3 consecutive retry rounds of connection failures" in message
    assert "0 of 200 replies are cached" in message and "re-run the same command" in message
    # rounds 1 and 2 announce their retry, the 3rd judges the endpoint down: 2 warnings, not 8 × 50
    assert len(warnings_of(caplog)) == 2
    assert client.calls <= 4 * 8  # about one attempt per worker per round: the queue never ran


@pytest.mark.slow
def test_1000_queued_requests_against_a_server_killed_after_12_replies_fail_in_seconds(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Default settings (back-off 1, 2, 4, 8 s; down after 5 rounds): about 15 s, was hours."""
    server = dying_server(live=12)
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    cache = ResponseCache(tmp_path / "replies.sqlite")
    client = LLMClient(OpenAIBackend(url, model="grader-x", timeout_s=5), cache=cache, concurrency=8)
    start = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="reprolab"), pytest.raises(EndpointDown) as err:
        client.complete([ask(i) for i in range(1000)])
    elapsed = time.monotonic() - start
    print(f"dead endpoint with 1000 queued requests failed after {elapsed:.1f} s")
    assert elapsed < 30, elapsed
    message = str(err.value)
    assert "12 of 1000 replies are cached" in message and str(cache.path) in message
    assert "cancelled the 988 requests left" in message
    assert len(cache) == 12
    assert len(warnings_of(caplog)) <= client.down_after  # one per retry round
    server.server_close()


def test_an_endpoint_that_comes_back_within_the_rounds_is_not_judged_down(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A blip (nothing listening for a moment) costs one retry round, not the run."""
    port = free_port()
    started: list[ThreadingHTTPServer] = []
    lock = threading.Lock()

    class ComesBack(OpenAIBackend):
        """Starts the server on the port once the first attempt has failed to connect."""

        def complete(self, request: ChatRequest) -> str:
            try:
                return super().complete(request)
            except Exception:
                with lock:
                    if not started:
                        server = ThreadingHTTPServer(("127.0.0.1", port), DiesAfter)
                        server.live, server.served, server.dead = 10_000, 0, False
                        server.lock = threading.Lock()
                        threading.Thread(target=server.serve_forever, daemon=True).start()
                        started.append(server)
                raise

    client = LLMClient(
        ComesBack(f"http://127.0.0.1:{port}/v1", model="m"),
        concurrency=4,
        backoff_base_s=0.2,
        down_after=2,
    )
    with caplog.at_level(logging.WARNING, logger="reprolab"):
        assert client.complete([ask(i) for i in range(20)]) == ["4"] * 20
    assert len(warnings_of(caplog)) == 1  # one round of connection failures, one warning
    started[0].shutdown()


@pytest.mark.slow  # a whole AlpaGasus smoke run up to its grade stage (~45 s on 2 cores)
def test_a_run_whose_grader_dies_stops_with_one_message_and_no_traceback(cli, tmp_path: Path) -> None:
    server = dying_server(live=12)
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    args = [
        "method=alpagasus",
        "scale=smoke",
        "method.n_train=1000",
        "method.grading=generate",
        "method.grader.backend=openai",
        f"method.grader.base_url={url}",
        "method.grader.model=grader-x",
        f"method.response_cache={tmp_path / 'replies.sqlite'}",
        "logger=none",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    start = time.monotonic()
    out = cli(*args, env={"REPROLAB_CACHE": str(tmp_path / "cache")}, timeout=600)
    elapsed = time.monotonic() - start
    print(f"the run stopped {elapsed:.1f} s after it started (imports and data stage included)")
    text = out.stdout + out.stderr
    assert out.returncode == 1 and elapsed < 120, text[-3000:]
    assert "Traceback" not in text and text.count("Stopped: LLM endpoint") == 1
    assert "12 of 1000 replies are cached" in text and "re-run the same command" in text
    assert text.count("WARNING") <= 5
    record = json.loads((tmp_path / "run" / "results.json").read_text())
    assert record["status"] == "failed"
    server.server_close()
