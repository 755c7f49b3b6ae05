"""Server-sent events for OpenAI streams: chunk rendering and an ASGI response that cancels.

:class:`SSEResponse` sends each ``data:`` event as produced and watches the connection: when the
client goes away it cancels the producer and closes the chunk iterator, so the engine sees the
cancel at once (not at its next token). Chunk bodies are built from pre-rendered byte prefixes
(one ``orjson.dumps`` of the text per chunk). Routing and errors before the stream are not here.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from llmloop.api.gateway.render import (
    OPENAI_FINISH,
    chat_logprobs,
    completion_logprobs,
    usage_dict,
)
from llmloop.core.chat import GenerationChunk, ToolCallDelta
from llmloop.errors import LlmloopError

DONE = b"data: [DONE]\n\n"


class ChunkRenderer:
    """Renders engine chunks as OpenAI ``chat.completion.chunk`` or ``text_completion`` events.

    With ``n`` choices, each chunk is rendered under its choice's index, and the usage chunk
    (``include_usage``) comes once, after the last choice finished: the prompt counted once, the
    completions summed.
    """

    def __init__(
        self, kind: str, cid: str, model: str, created: int, include_usage: bool, n: int = 1
    ) -> None:
        self.chat = kind == "chat"
        self.include_usage = include_usage
        obj = "chat.completion.chunk" if self.chat else "text_completion"
        head = {"id": cid, "object": obj, "created": created, "model": model}
        self._base = b"data: " + orjson.dumps(head)[:-1] + b","
        self._heads = [self._base + b'"choices":[{"index":%d,' % i for i in range(n)]
        self._usage_tail = b',"usage":null}\n\n' if include_usage else b"}\n\n"
        self._started = [False] * n
        self._offsets = [0] * n  # characters streamed per choice (legacy logprobs' offsets)
        self._left = n  # choices not finished yet
        self._prompt_tokens = self._completion_tokens = 0

    def render(self, chunk: GenerationChunk, index: int = 0) -> bytes:
        out = b""
        head = self._heads[index]
        if self.chat and not self._started[index]:
            self._started[index] = True
            out = (head + b'"delta":{"role":"assistant","content":""},"logprobs":null,'
                   b'"finish_reason":null}]' + self._usage_tail)  # fmt: skip
        if chunk.text or chunk.logprobs or (chunk.finish_reason is None and not chunk.tool_calls):
            text = orjson.dumps(chunk.text)
            body = b'"delta":{"content":' + text + b"}," if self.chat else b'"text":' + text + b","
            scores = b"null" if chunk.logprobs is None else self._logprobs(chunk, index)
            out += (head + body + b'"logprobs":' + scores + b',"finish_reason":null}]'
                    + self._usage_tail)  # fmt: skip
        if chunk.tool_calls and self.chat:
            calls = orjson.dumps([_tool_delta(d) for d in chunk.tool_calls])
            out += (head + b'"delta":{"tool_calls":' + calls +
                    b'},"logprobs":null,"finish_reason":null}]' + self._usage_tail)  # fmt: skip
        if chunk.finish_reason is not None:
            finish = OPENAI_FINISH.get(chunk.finish_reason, "stop").encode()
            body = b'"delta":{},' if self.chat else b'"text":"",'
            out += (head + body + b'"logprobs":null,"finish_reason":"' + finish + b'"}]'
                    + self._usage_tail)  # fmt: skip
            if self.include_usage:
                out += self._usage(chunk)
        return out

    def _logprobs(self, chunk: GenerationChunk, index: int) -> bytes:
        """A chunk's log-probabilities: chat's ``{"content": [...]}``, or the legacy shape with
        each token's offset into the whole text streamed so far."""
        if self.chat:
            return orjson.dumps(chat_logprobs(chunk.logprobs))
        start = self._offsets[index]
        self._offsets[index] = start + sum(len(lp.token) for lp in chunk.logprobs or ())
        return orjson.dumps(completion_logprobs(chunk.logprobs, start))

    def _usage(self, final: GenerationChunk) -> bytes:
        """The usage chunk once every choice has finished (b"" before)."""
        self._left -= 1
        if final.usage is not None:
            self._prompt_tokens = final.usage.prompt_tokens
            self._completion_tokens += final.usage.completion_tokens
        if self._left > 0:
            return b""
        usage = usage_dict(self._prompt_tokens, self._completion_tokens)
        return self._base + b'"choices":[],"usage":' + orjson.dumps(usage) + b"}\n\n"


def _tool_delta(delta: ToolCallDelta) -> dict[str, Any]:
    """OpenAI's tool-call delta: id, type and name on a call's first piece, then arguments."""
    fn: dict[str, Any] = {"arguments": delta.arguments}
    out: dict[str, Any] = {"index": delta.index}
    if delta.id is not None:
        out["id"], out["type"] = delta.id, "function"
    if delta.name is not None:
        fn = {"name": delta.name, "arguments": delta.arguments}
    out["function"] = fn
    return out


def error_fields(exc: BaseException) -> tuple[str, str, int]:
    """(message, code, status) of a failure mid-stream; other exceptions say nothing inside."""
    if isinstance(exc, LlmloopError):
        return exc.detail, exc.code, exc.status
    return "the stream failed", "internal_error", 500


def error_event(exc: BaseException) -> bytes:
    """An OpenAI-style error object as an SSE event (mid-stream failures)."""
    message, code, status = error_fields(exc)
    kind = "invalid_request_error" if status < 500 else "api_error"
    body: dict[str, Any] = {"error": {"message": message, "type": kind, "param": None,
                                      "code": code}}  # fmt: skip
    return b"data: " + orjson.dumps(body) + b"\n\n"


class SSEResponse(Response):
    """Stream ``events`` (bytes) as ``text/event-stream``; cancel them on client disconnect."""

    def __init__(self, events: AsyncIterator[bytes], headers: dict[str, str]) -> None:
        self.events = events
        self.status_code = 200
        self.background = None
        self.extra_headers = [(k.lower().encode(), v.encode()) for k, v in headers.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", b"text/event-stream; charset=utf-8"),
                   (b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no"),
                   *self.extra_headers]  # fmt: skip
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        pump = asyncio.ensure_future(self._pump(send))
        watch = asyncio.ensure_future(self._watch(receive))
        try:
            await asyncio.wait((pump, watch), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (pump, watch):
                if not task.done():
                    task.cancel()
            await asyncio.gather(pump, watch, return_exceptions=True)
            aclose = getattr(self.events, "aclose", None)
            if aclose is not None:
                await aclose()
        if pump.done() and not pump.cancelled() and pump.exception() is None:
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _pump(self, send: Send) -> None:
        async for data in self.events:
            await send({"type": "http.response.body", "body": data, "more_body": True})

    async def _watch(self, receive: Receive) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
