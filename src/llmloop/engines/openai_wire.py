"""The openai engine's reading of upstream answers: usage, finish reasons, tool calls, logprobs,
server-sent events and error statuses (with ``Retry-After``), as llmloop values and errors.

Statuses become errors here: 400 and 422 are the client's (BadRequestError, with the upstream's
``param``), 413 PayloadTooLargeError, 408 and 504 UpstreamTimeoutError, 429 and 5xx retryable
UpstreamErrors carrying ``upstream_status`` and ``retry_after``, other 4xx non-retryable ones.
Building requests and the HTTP session are ``openai_compat``'s.
"""

from __future__ import annotations

import email.utils
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson

from llmloop.core.chat import TokenLogprob, ToolCall, ToolCallDelta, Usage
from llmloop.errors import (
    BadRequestError,
    PayloadTooLargeError,
    UpstreamError,
    UpstreamTimeoutError,
)

DONE: dict[str, Any] = {}  # what sse_events yields for ``[DONE]`` (compared by identity)


def read_usage(payload: dict[str, Any] | None) -> Usage:
    payload = payload or {}
    return Usage(
        prompt_tokens=int(payload.get("prompt_tokens") or 0),
        completion_tokens=int(payload.get("completion_tokens") or 0),
    )


def read_finish(value: object) -> Any:
    allowed = {"stop", "length", "content_filter", "error", "cancelled", "tool_calls"}
    if value == "function_call":
        return "tool_calls"
    return value if value in allowed else "stop"


def read_tool_calls(value: Any) -> list[ToolCall] | None:
    if not value:
        return None
    calls = []
    for i, call in enumerate(value):
        fn = call.get("function") or {}
        calls.append(ToolCall(id=str(call.get("id") or f"call_{i}"), name=str(fn.get("name", "")),
                              arguments=str(fn.get("arguments") or "")))  # fmt: skip
    return calls


def read_tool_deltas(value: list[dict[str, Any]]) -> list[ToolCallDelta]:
    out = []
    for i, item in enumerate(value):
        fn = item.get("function") or {}
        index = int(item.get("index", i))
        out.append(ToolCallDelta(index=index, id=item.get("id"), name=fn.get("name"),
                                 arguments=fn.get("arguments") or ""))  # fmt: skip
    return out


def _retry_after(value: str | None) -> float | None:
    """An upstream's ``Retry-After``: seconds, or an HTTP date (None when absent or unreadable)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _error_fields(raw: bytes, reason: str | None) -> tuple[str, str | None]:
    """The upstream's error message and ``param`` from an OpenAI-shaped (or any) error body."""
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode(errors="replace")[:500] or (reason or ""), None
    error = payload.get("error", payload) if isinstance(payload, dict) else payload
    if not isinstance(error, dict):
        return str(error)[:500], None
    param = error.get("param")
    return str(error.get("message") or reason or ""), param if isinstance(param, str) else None


async def raise_for(response: aiohttp.ClientResponse) -> None:
    raw = b""
    try:
        raw = await response.read()
    except (TimeoutError, aiohttp.ClientError):
        pass
    finally:
        response.release()
    message, param = _error_fields(raw, response.reason)
    status = response.status
    if status in (400, 422):  # the request itself was refused: the client's to fix
        raise BadRequestError(f"the upstream refused the request: {message}", param=param)
    if status == 501:  # what this upstream does not do (llama-server --embeddings: completions)
        raise BadRequestError(f"the upstream does not support this request: {message}")
    if status == 413:
        raise PayloadTooLargeError(f"the upstream refused the request as too large: {message}")
    detail = f"upstream answered {status}: {message}"
    if status in (408, 504):
        raise UpstreamTimeoutError(detail, upstream_status=status)
    retryable = status == 429 or status >= 500
    wait = _retry_after(response.headers.get("Retry-After")) if retryable else None
    extra: dict[str, Any] = {"upstream_status": status}
    if wait is not None:
        extra["retry_after"] = wait
    raise UpstreamError(detail, retryable=retryable, **extra)


async def sse_events(response: aiohttp.ClientResponse) -> AsyncIterator[dict[str, Any]]:
    """Server-sent events' JSON payloads (``data:`` lines), then :data:`DONE` at ``[DONE]``.

    An answer that is not an event stream (an upstream or a proxy answering JSON) is read whole:
    an error in it is raised, a completion is given as one event. A stream that ends without
    ``[DONE]`` ends without :data:`DONE`; the caller decides whether it was cut short."""
    if response.content_type != "text/event-stream":
        yield _whole_answer(await response.read(), response.content_type)
        yield DONE
        return
    async for raw in response.content:
        line = raw.strip()
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if data == b"[DONE]":
            yield DONE
            return
        try:
            yield orjson.loads(data)
        except orjson.JSONDecodeError:
            raise UpstreamError(f"bad SSE payload from upstream: {data[:200]!r}") from None


def _whole_answer(raw: bytes, content_type: str) -> dict[str, Any]:
    """A non-streamed answer to a stream request, as one stream event (choices' ``message``
    read as ``delta``)."""
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError:
        payload = None
    if not isinstance(payload, dict) or not isinstance(payload.get("choices"), list):
        if isinstance(payload, dict) and "error" in payload:
            message, _ = _error_fields(raw, None)
            raise UpstreamError(f"upstream answered the stream with an error: {message}")
        raise UpstreamError(
            f"upstream answered a stream request with {content_type or 'no content type'}, "
            f"not an event stream: {raw[:200]!r}"
        )
    for choice in payload["choices"]:
        if isinstance(choice, dict) and "message" in choice:
            choice["delta"] = choice.pop("message") or {}
    return payload


def read_chat_logprobs(payload: dict[str, Any] | None) -> list[TokenLogprob] | None:
    if not payload or payload.get("content") is None:
        return None
    out, offset = [], 0
    for item in payload["content"]:
        top = {t["token"]: t["logprob"] for t in item.get("top_logprobs") or []} or None
        out.append(
            TokenLogprob(token=item["token"], logprob=item["logprob"], top=top, offset=offset)
        )
        offset += len(item["token"])
    return out


def read_completion_logprobs(payload: dict[str, Any] | None) -> list[TokenLogprob] | None:
    if not payload:
        return None
    tokens = payload.get("tokens") or []
    values = payload.get("token_logprobs") or [None] * len(tokens)
    tops = payload.get("top_logprobs") or [None] * len(tokens)
    offsets = payload.get("text_offset") or [0] * len(tokens)
    return [
        TokenLogprob(token=t, logprob=v, top=top or None, offset=o)
        for t, v, top, o in zip(tokens, values, tops, offsets, strict=False)
    ]
