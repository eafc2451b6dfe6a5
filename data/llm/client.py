"""One client for every LLM the methods call (graders, judges, black-box scorers), two backends:

- ``openai``: any OpenAI-compatible HTTP endpoint (OpenAI, vLLM, ``python -m data.llm.serve``). The key
  is read from the environment variable named in config, never from the config itself, and never logged.
- ``local``: a transformers causal LM in this process, batched greedy/sampled generation.

Every response is cached on disk; HTTP calls run concurrently with timeouts and capped exponential
back-off. ``calls`` counts real backend calls, so a fully cached re-run can be checked to make none.
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
    """A failure worth retrying (connection, timeout, rate limit, server error)."""


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
        except (openai.APIConnectionError, openai.RateLimitError, openai.InternalServerError) as ex:
            raise RetryableError(f"{type(ex).__name__}: {ex}") from ex
        return out.choices[0].message.content or ""


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
            texts = [
                tok.apply_chat_template(r.messages, tokenize=False, add_generation_prompt=True) for r in chunk
            ]
            side, tok.padding_side = tok.padding_side, "left"
            batch = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(
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
    def __init__(
        self,
        backend: OpenAIBackend | LocalBackend,
        cache: ResponseCache | None = None,
        concurrency: int = 4,
        max_retries: int = 5,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 30.0,
    ) -> None:
        self.backend, self.cache, self.concurrency = backend, cache, concurrency
        self.max_retries, self.backoff_base_s, self.backoff_max_s = max_retries, backoff_base_s, backoff_max_s
        self.calls = 0
        self._count = threading.Lock()

    def _with_retries(self, request: ChatRequest) -> str:
        for attempt in range(self.max_retries + 1):
            try:
                with self._count:
                    self.calls += 1
                return self.backend.complete(request)
            except RetryableError as ex:
                if attempt == self.max_retries:
                    raise RuntimeError(
                        f"{self.backend.identity}: gave up after {attempt + 1} attempts: {ex}"
                    ) from ex
                delay = min(self.backoff_max_s, self.backoff_base_s * 2**attempt)
                log.warning("%s: %s; retrying in %.1f s", self.backend.identity, ex, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")

    def complete(self, requests: Sequence[ChatRequest]) -> list[str]:
        """Responses in request order. Each response is cached as soon as it arrives, so an interrupted
        run loses nothing it already paid for; cached ones are never sent again."""
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
            with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
                futures = {pool.submit(self._with_retries, requests[i]): i for i in todo}
                for future in as_completed(futures):
                    store(futures[future], future.result())
        return [o if o is not None else "" for o in out]


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
    return LLMClient(backend, cache, concurrency=cfg.concurrency, max_retries=cfg.max_retries)
