"""One client for every LLM the methods call (graders, judges, black-box scorers), two backends:

- ``openai``: any OpenAI-compatible HTTP endpoint (OpenAI, vLLM, ``python -m data.llm.serve``). The key
  is read from the environment variable named in config, never from the config itself, and never logged.
- ``local``: a transformers causal LM in this process, batched greedy/sampled generation.

Every response is cached on disk; HTTP calls run concurrently with timeouts and capped exponential
back-off. ``calls`` counts real backend calls, so a fully cached re-run can be checked to make none.

A dead endpoint fails fast: the workers share one back-off (a failure pauses every request, and one
warning is logged per retry round, not per request), and after ``down_after`` consecutive rounds of
connection failures the endpoint is judged down: the queue is cancelled and one ``EndpointDown`` says
which endpoint, how many replies are cached and how to resume. Without the shared rounds each of 1,000
queued requests ran its own ~31 s of retries.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

from data.llm.response_cache import ResponseCache, request_key

log = logging.getLogger("reprolab")
Messages = list[dict[str, str]]


@dataclass(frozen=True)
class ChatRequest:
    messages: Messages
    temperature: float = 0.0
    max_tokens: int = 256

    def params(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "max_tokens": self.max_tokens}


class RetryableError(RuntimeError):
    """A failure worth retrying (connection, timeout, rate limit, server error). ``connection``: no answer
    came back at all (refused, reset, timed out), the kind that says the endpoint may be down."""

    def __init__(self, message: str, connection: bool = False) -> None:
        super().__init__(message)
        self.connection = connection


class EndpointDown(RuntimeError):
    """The endpoint stopped answering (or a request ran out of retries); the queue was cancelled.
    The message names the endpoint, the model, the replies cached so far and how to resume."""


class RequestRejected(RuntimeError):
    """The endpoint answered a request with a client error (4xx other than 408/429): retrying the same
    request cannot help. ``status``: the HTTP status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class ModelUnavailable(EndpointDown):
    """The endpoint refuses the model itself (it does not exist or was retired, 404; the key is wrong or
    lacks access, 401/403; or it rejects even a one-token request): found by the probe before any record
    is sent, or by the first record that meets it. The message names the model and the endpoint."""


# Statuses that condemn one request only (its prompt is too long, malformed, refused by a filter): the
# error is recorded against that request and the batch goes on. Other 4xx (401, 403, 404) condemn the
# model or the key: the whole batch stops with ModelUnavailable.
PER_REQUEST_STATUSES = (400, 413, 422)
# The probe sends the first uncached requests one at a time until one is answered; this many rejected
# with a per-request status in a row, and before any success, condemn the model's request format.
PROBE_REJECTIONS = 3


class _Cancelled(Exception):
    """Raised in a worker whose request was abandoned because the batch already failed."""


@dataclass
class OpenAIBackend:
    base_url: str | None
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    timeout_s: float = 60.0
    _client: Any = field(default=None, repr=False)

    @property
    def identity(self) -> str:
        return f"openai:{self.base_url or 'default'}:{self.model}"

    def _openai(self) -> Any:
        if self._client is None:
            import openai

            # Local servers need no key; the library insists on one, so a placeholder stands in.
            key = os.environ.get(self.api_key_env) or "not-needed"
            self._client = openai.OpenAI(
                base_url=self.base_url, api_key=key, timeout=self.timeout_s, max_retries=0
            )
        return self._client

    def complete(self, request: ChatRequest) -> str:
        import openai

        try:
            out = self._openai().chat.completions.create(
                model=self.model,
                messages=request.messages,
                temperature=request.temperature,
                max_tokens=request.max_tokens,
            )
        except openai.APIConnectionError as ex:  # includes APITimeoutError: no answer at all
            raise RetryableError(f"{type(ex).__name__}: {ex}", connection=True) from ex
        except (openai.RateLimitError, openai.InternalServerError) as ex:
            raise RetryableError(f"{type(ex).__name__}: {ex}") from ex
        except openai.APIStatusError as ex:
            if ex.status_code in (408, 409) or ex.status_code >= 500:  # timeout, conflict, odd 5xx: retry
                raise RetryableError(f"{type(ex).__name__}: {ex}") from ex
            raise RequestRejected(f"HTTP {ex.status_code} {type(ex).__name__}: {ex}", ex.status_code) from ex
        return out.choices[0].message.content or ""


# Vicuna v1.1's conversation format (FastChat's ``vicuna_v1.1``), for tokenizers without a chat template:
# Vicuna's 2023 releases have none and ``apply_chat_template`` raises in transformers 4.57.
VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
    "detailed, and polite answers to the user's questions."
)


def chat_text(tokenizer: Any, messages: Sequence[dict[str, str]]) -> tuple[str, bool]:
    """A chat as the model's input text, and whether encoding it must add the special tokens: the
    tokenizer's own template (its text holds them already), else the Vicuna format with the BOS added."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            list(messages), tokenize=False, add_generation_prompt=True
        ), False
    system = next((m["content"] for m in messages if m["role"] == "system"), VICUNA_SYSTEM)
    turns = "".join(
        f" {'ASSISTANT' if m['role'] == 'assistant' else 'USER'}: {m['content']}"
        for m in messages
        if m["role"] != "system"
    )
    return f"{system}{turns} ASSISTANT:", True


class LocalBackend:
    """A transformers chat model; requests are generated in padded batches."""

    def __init__(self, model: Any, tokenizer: Any, identity: str, batch_size: int = 8) -> None:
        self.model, self.tokenizer, self.identity, self.batch_size = model, tokenizer, identity, batch_size
        self._lock = threading.Lock()  # one generate at a time (a server may call from several threads)

    def complete_many(self, requests: Sequence[ChatRequest]) -> list[str]:
        import torch

        out: list[str] = [""] * len(requests)
        tok = self.tokenizer
        # A batch shares one sampling temperature, so requests are batched per temperature.
        by_temperature: dict[float, list[int]] = {}
        for i, request in enumerate(requests):
            by_temperature.setdefault(request.temperature, []).append(i)
        batches = [
            ids[s : s + self.batch_size]
            for ids in by_temperature.values()
            for s in range(0, len(ids), self.batch_size)
        ]
        for indices in batches:
            chunk = [requests[i] for i in indices]
            encoded = [chat_text(tok, r.messages) for r in chunk]
            texts, add_special = [text for text, _ in encoded], encoded[0][1]
            side, tok.padding_side = tok.padding_side, "left"
            batch = tok(texts, return_tensors="pt", padding=True, add_special_tokens=add_special).to(
                self.model.device
            )
            tok.padding_side = side
            sample = chunk[0].temperature > 0
            with self._lock, torch.no_grad():
                ids = self.model.generate(
                    **batch,
                    max_new_tokens=max(r.max_tokens for r in chunk),
                    do_sample=sample,
                    temperature=chunk[0].temperature if sample else None,
                    top_p=None,
                    top_k=None,
                    pad_token_id=tok.pad_token_id,
                )
            new = ids[:, batch["input_ids"].shape[1] :]
            for row, i in zip(new, indices, strict=True):
                out[i] = tok.decode(row[: requests[i].max_tokens], skip_special_tokens=True).strip()
        return out

    def complete(self, request: ChatRequest) -> str:
        return self.complete_many([request])[0]


class LLMClient:
    """Cached, concurrent completions with one shared back-off and a dead-endpoint breaker.

    ``down_after``: the endpoint is judged down after this many consecutive retry rounds of connection
    failures (a round: the failures of the requests in flight together count once). With the default
    back-off (1, 2, 4, 8 s) that is about 15 s after the endpoint stops answering, whatever the queue size.
    """

    def __init__(
        self,
        backend: OpenAIBackend | LocalBackend,
        cache: ResponseCache | None = None,
        concurrency: int = 4,
        max_retries: int = 5,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 30.0,
        down_after: int = 5,
        probe: bool = True,
    ) -> None:
        self.backend, self.cache, self.concurrency = backend, cache, concurrency
        self.max_retries, self.backoff_base_s, self.backoff_max_s = max_retries, backoff_base_s, backoff_max_s
        self.down_after = down_after
        # probe: the first uncached HTTP request goes alone, before the rest of the queue, so a model the
        # endpoint does not serve fails after one request (named), not after the queue was sent. The
        # probe is a real request of the batch (answered, cached, counted): it costs nothing extra.
        self.probe, self.probed = probe, False
        # Requests of the last ``complete`` rejected with a per-request client error: index -> message.
        # Their reply is "" and nothing is cached, so a re-run asks again.
        self.errors: dict[int, str] = {}
        self.calls = 0
        self._count = threading.Lock()
        self._new_batch()

    def _new_batch(self) -> None:
        """Reset the shared retry state (one ``complete`` call at a time shares it)."""
        self._stop = threading.Event()
        self._retry_at = 0.0  # monotonic time before which no request is sent (the current round's pause)
        self._round_began = 0.0  # when the current round's first failure came back
        self._rounds = 0  # consecutive failed rounds; a success resets
        self._down_rounds = 0  # of which consecutive rounds of connection failures
        self._failed_attempts = 0

    def _wait_turn(self) -> None:
        """Wait out the shared pause; raise _Cancelled once the batch has failed."""
        while True:
            if self._stop.is_set():
                raise _Cancelled
            remaining = self._retry_at - time.monotonic()
            if remaining <= 0:
                return
            self._stop.wait(remaining)

    def _failed(self, started: float, ex: RetryableError, last: bool = False) -> bool:
        """Count a failed attempt that started at ``started``; True when the endpoint is judged down.

        A failure of an attempt that started before the current round's pause ended belongs to that
        round: it adds no count and no warning (requests failing together are one retry burst)."""
        with self._count:
            self._failed_attempts += 1
            if started < self._retry_at:
                return False
            self._rounds += 1
            self._round_began = time.monotonic()
            self._down_rounds = self._down_rounds + 1 if ex.connection else 0
            if self._down_rounds >= self.down_after:
                return True
            if last:  # the request gives up: no retry to announce
                return False
            delay = min(self.backoff_max_s, self.backoff_base_s * 2 ** (self._rounds - 1))
            self._retry_at = time.monotonic() + delay
            log.warning(
                "%s: %s; retrying in %.1f s (retry round %d%s)",
                self.backend.identity,
                ex,
                delay,
                self._rounds,
                f"; judged down after {self.down_after} rounds of connection failures"
                if ex.connection
                else "",
            )
            return False

    def _with_retries(self, request: ChatRequest) -> str:
        for attempt in range(self.max_retries + 1):
            self._wait_turn()
            started = time.monotonic()
            try:
                with self._count:
                    self.calls += 1
                text = self.backend.complete(request)
            except RetryableError as ex:
                if self._failed(started, ex, last=attempt == self.max_retries):
                    raise _Failure(
                        f"{self.down_after} consecutive retry rounds of connection failures "
                        f"({self._failed_attempts} failed attempts; last: {ex})"
                    ) from ex
                if attempt == self.max_retries:
                    raise _Failure(f"a request gave up after {attempt + 1} attempts: {ex}") from ex
                continue
            with self._count:
                if started >= self._round_began:  # up after the last failure, not just before it
                    self._rounds = self._down_rounds = 0
            return text
        raise AssertionError("unreachable")

    def _stopped_message(self, why: str, done: int, total: int, started: float) -> str:
        backend = self.backend
        where = getattr(backend, "base_url", None) or "the default OpenAI endpoint"
        model = getattr(backend, "model", backend.identity)
        cached = f" in {self.cache.path}" if self.cache is not None else " nowhere (no response cache)"
        return (
            f"LLM endpoint {where} (model {model}) is not answering: {why}. Stopped after "
            f"{time.monotonic() - started:.1f} s and cancelled the {total - done} requests left; "
            f"{done} of {total} replies are cached{cached}. To resume, re-run the same command once the "
            f"endpoint is up: cached replies are kept and never requested again."
        )

    def _refused(self, ex: RequestRejected, when: str) -> ModelUnavailable:
        backend = self.backend
        where = getattr(backend, "base_url", None) or "the default OpenAI endpoint"
        model = getattr(backend, "model", backend.identity)
        hint = {
            404: "the model does not exist there (or was retired): check the model name",
            401: "the API key was refused: check the environment variable that holds it",
            403: "the key has no access to this model",
        }.get(ex.status, "the endpoint rejects even this request")
        cached = f"; replies cached so far are kept in {self.cache.path}" if self.cache is not None else ""
        return ModelUnavailable(f"LLM endpoint {where} refused model {model} {when}: {hint} ({ex}){cached}")

    def _probe(self, requests: Sequence[ChatRequest], todo: list[int], store: Any) -> list[int]:
        """Send the first of ``todo`` alone (then the next, while they are rejected one by one) before
        the rest of the queue: a model the endpoint refuses (404, 401, 403) fails here, with the model
        and endpoint named and the rest unsent. Connection failures get the usual retries. Returns the
        requests still to send."""
        self._new_batch()
        began = time.monotonic()
        rejected = 0
        while todo:
            i, todo = todo[0], todo[1:]
            try:
                store(i, self._with_retries(requests[i]))
            except RequestRejected as ex:
                if ex.status not in PER_REQUEST_STATUSES or rejected + 1 >= PROBE_REJECTIONS:
                    when = f"at its first request ({len(todo)} queued requests were not sent)"
                    raise self._refused(ex, when) from None
                rejected += 1
                self.errors[i] = str(ex)
                continue
            except _Failure as ex:
                raise EndpointDown(self._stopped_message(str(ex), 0, len(requests), began)) from None
            self.probed = True
            break
        return todo

    def complete(self, requests: Sequence[ChatRequest]) -> list[str]:
        """Responses in request order. Each response is cached as soon as it arrives, so an interrupted
        run loses nothing it already paid for; cached ones are never sent again. Raises EndpointDown
        (one error, the queue cancelled) when the endpoint stops answering, ModelUnavailable when it
        refuses the model (404, 401, 403); a request rejected on its own (400, 413, 422) gets "" and
        its error in ``self.errors`` (by index), and the others go on."""
        self.errors = {}
        model = self.backend.identity
        keys = [request_key(model, r.messages, r.params()) for r in requests]
        out: list[str | None] = [self.cache.get(k) if self.cache else None for k in keys]
        todo = [i for i, o in enumerate(out) if o is None]

        def store(i: int, text: str) -> None:
            out[i] = text
            if self.cache is not None:
                self.cache.put(keys[i], model, text)

        if isinstance(self.backend, LocalBackend):
            step = self.backend.batch_size
            for start in range(0, len(todo), step):
                chunk = todo[start : start + step]
                with self._count:
                    self.calls += len(chunk)
                for i, text in zip(
                    chunk, self.backend.complete_many([requests[i] for i in chunk]), strict=True
                ):
                    store(i, text)
        elif todo:
            if self.probe and not self.probed:
                todo = self._probe(requests, todo, store)
            self._new_batch()
            began = time.monotonic()

            def one(i: int) -> None:  # stores in the worker: a reply is kept even if the batch fails
                try:
                    store(i, self._with_retries(requests[i]))
                except RequestRejected as ex:
                    if ex.status not in PER_REQUEST_STATUSES:
                        raise _Refused(ex) from ex
                    self.errors[i] = str(ex)
                    log.warning("%s: request %d rejected, recorded and skipped: %s", model, i, ex)

            pool = ThreadPoolExecutor(max_workers=self.concurrency)
            futures = [pool.submit(one, i) for i in todo]
            try:
                for future in as_completed(futures):
                    try:
                        future.result()
                    except _Cancelled:
                        continue
            except _Failure as ex:
                self._stop.set()
                pool.shutdown(wait=False, cancel_futures=True)
                done = sum(o is not None for o in out)
                raise EndpointDown(self._stopped_message(str(ex), done, len(requests), began)) from None
            except _Refused as ex:
                self._stop.set()
                pool.shutdown(wait=False, cancel_futures=True)
                done = sum(o is not None for o in out)
                raise self._refused(ex.rejected, f"after {done} of {len(requests)} replies") from None
            except BaseException:
                self._stop.set()
                pool.shutdown(wait=False, cancel_futures=True)
                raise
            pool.shutdown(wait=True)
        return [o if o is not None else "" for o in out]


class _Failure(Exception):
    """A worker's reason to stop the whole batch (the endpoint is down, or a request ran out of retries)."""


class _Refused(Exception):
    """A worker's reason to stop the whole batch: the endpoint refuses the model or the key."""

    def __init__(self, rejected: RequestRejected) -> None:
        super().__init__(str(rejected))
        self.rejected = rejected


def local_lm(name: str) -> Any:
    """A causal LM by offline name (conf/model/<name>.yaml) or hub name."""
    from data.config import CausalLMConfig
    from data.llm.loader import OFFLINE_MODELS, load_causal_lm, offline_model

    return load_causal_lm(offline_model(name) if name in OFFLINE_MODELS else CausalLMConfig(name=name))


def make_client(cfg: Any, cache_path: str | os.PathLike | None = None) -> LLMClient:
    """An ``LLMClient`` from an ``LLMClientConfig``; responses cached at ``cache_path`` when given."""
    if cfg.backend == "openai":
        backend: OpenAIBackend | LocalBackend = OpenAIBackend(
            cfg.base_url, cfg.model, cfg.api_key_env, cfg.timeout_s
        )
    else:
        lm = local_lm(cfg.model)
        identity = f"local:{cfg.model}"
        backend = LocalBackend(lm.model, lm.tokenizer, identity=identity, batch_size=cfg.batch_size)
    cache = ResponseCache(cache_path) if cache_path is not None else None
    return LLMClient(
        backend,
        cache,
        concurrency=cfg.concurrency,
        max_retries=cfg.max_retries,
        down_after=getattr(cfg, "down_after", 5),
    )
