"""A minimal OpenAI-compatible chat server over a local transformers model (stdlib HTTP, loopback).

    python -m data.llm.serve [--port 8000]          # serves SmolLM2-135M-Instruct from its wheel

Lets the HTTP backend of ``data.llm.client`` be used (and tested) for real without any network:
``POST /v1/chat/completions`` and ``GET /v1/models``, the subset graders and judges need.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from data.llm.client import ChatRequest, LocalBackend


class HTTPStatusError(Exception):
    """Raised by a backend to answer a request with an HTTP error, as a real endpoint would (a scripted
    backend in tests: 404 for a retired model, 401 for a bad key, 400 for one malformed request)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def make_server(backend: LocalBackend, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """A server bound to (host, port); port 0 picks a free one (``server.server_address[1]``)."""

    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path.rstrip("/") == "/v1/models":
                self._send(200, {"object": "list", "data": [{"id": backend.identity, "object": "model"}]})
            else:
                self._send(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self) -> None:
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._send(404, {"error": {"message": f"no route {self.path}"}})
                return
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            request = ChatRequest(
                messages=body["messages"],
                temperature=float(body.get("temperature") or 0.0),
                max_tokens=int(body.get("max_tokens") or body.get("max_completion_tokens") or 256),
            )
            try:
                text = backend.complete(request)
            except HTTPStatusError as ex:
                server.requests_served += 1
                self._send(ex.status, {"error": {"message": ex.message, "type": "invalid_request_error"}})
                return
            server.requests_served += 1
            self._send(
                200,
                {
                    "id": f"chatcmpl-{server.requests_served}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body.get("model", backend.identity),
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
                },
            )

        def log_message(self, *args: Any) -> None:  # keep test and CLI output quiet
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.requests_served = 0
    return server


def serve_in_thread(server: ThreadingHTTPServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return thread


def main() -> None:
    from data.llm.loader import load_causal_lm, offline_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    cfg = offline_model("smollm2_135m")
    lm = load_causal_lm(cfg)
    server = make_server(LocalBackend(lm.model, lm.tokenizer, identity=cfg.name), args.host, args.port)
    print(f"serving {cfg.name} at http://{args.host}:{server.server_address[1]}/v1")
    server.serve_forever()


if __name__ == "__main__":
    main()
