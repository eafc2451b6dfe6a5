"""Is a model served at an OpenAI-compatible endpoint? Asked once (``GET /v1/models``) before any record
is sent and before anything heavy loads, so a wrong or retired model name fails in a second, named."""

from __future__ import annotations

import logging
import os

from data.llm.client import EndpointDown, ModelUnavailable

log = logging.getLogger("reprolab")


def served_models(
    base_url: str | None, api_key_env: str = "OPENAI_API_KEY", timeout_s: float = 30.0
) -> list[str]:
    """The model ids the endpoint lists; raises ModelUnavailable (key refused) or EndpointDown (no answer)."""
    import openai

    where = base_url or "the default OpenAI endpoint"
    key = os.environ.get(api_key_env) or "not-needed"  # local servers need no key (as OpenAIBackend)
    client = openai.OpenAI(base_url=base_url, api_key=key, timeout=timeout_s, max_retries=2)
    try:
        return [m.id for m in client.models.list()]
    except openai.APIConnectionError as ex:
        raise EndpointDown(f"LLM endpoint {where} is not answering ({type(ex).__name__}: {ex})") from None
    except openai.APIStatusError as ex:
        if ex.status_code in (401, 403):
            raise ModelUnavailable(
                f"LLM endpoint {where} refused the API key in ${api_key_env} (HTTP {ex.status_code}): {ex}"
            ) from None
        raise


def check_model_served(base_url: str | None, model: str, api_key_env: str = "OPENAI_API_KEY") -> None:
    """Raise ModelUnavailable when the endpoint's model list lacks ``model`` (the message names the model,
    the endpoint and what it serves). An endpoint without the list route (404) is let through: the
    client's probe (data.llm.client) still sends one request alone before the rest."""
    import openai

    where = base_url or "the default OpenAI endpoint"
    try:
        ids = served_models(base_url, api_key_env)
    except openai.NotFoundError:
        log.warning("LLM endpoint %s lists no models (GET /models: 404); %s is checked by its first request",
                    where, model)  # fmt: skip
        return
    if model not in ids:
        shown = ", ".join(sorted(ids)[:20]) + (" …" if len(ids) > 20 else "")
        raise ModelUnavailable(
            f"LLM endpoint {where} does not serve model {model!r} (it lists: {shown or 'nothing'}); check "
            "the model name (method.black_box_model) or the endpoint (method.base_url)"
        )
