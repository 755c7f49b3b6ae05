"""The openai engine against upstreams that misbehave: refused requests, Retry-After, answers
that are not event streams, streams cut short or stalled, and long streams that keep coming."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import orjson
import pytest
from aiohttp import web

from llmloop.core.chat import ChatMessage, EngineSpec, GenerationRequest, SamplingParams
from llmloop.engines.echo import EchoEngine
from llmloop.engines.openai_compat import OpenAICompatEngine
from llmloop.errors import (
    BadRequestError,
    PayloadTooLargeError,
    UpstreamError,
    UpstreamTimeoutError,
)
from llmloop.testing.mock_upstream import MockUpstream

REQ = GenerationRequest(
    model="m",
    messages=[ChatMessage(role="user", content="one two three four five six")],
    sampling=SamplingParams(max_tokens=16),
)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _serve(handler: Handler) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}/v1"


@pytest.fixture
async def canned() -> AsyncIterator[Callable[[Handler], Awaitable[OpenAICompatEngine]]]:
    """Start an upstream answering with ``handler``; returns an openai engine aimed at it."""
    runners: list[web.AppRunner] = []
    engines: list[OpenAICompatEngine] = []

    async def start(handler: Handler, **options: Any) -> OpenAICompatEngine:
        runner, base_url = await _serve(handler)
        runners.append(runner)
        spec = EngineSpec(kind="openai", model="m", options={"base_url": base_url, **options})
        engines.append(OpenAICompatEngine(spec))
        return engines[-1]

    yield start  # type: ignore[misc]
    for engine in engines:
        await engine.aclose()
    for runner in runners:
        await runner.cleanup()


def _error(status: int, headers: dict[str, str] | None = None, **error: Any) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        body = orjson.dumps({"error": {"message": "nope", **error}})
        return web.Response(body=body, status=status, headers=headers,
                            content_type="application/json")  # fmt: skip

    return handler


async def _sse(request: web.Request, events: list[bytes], pause: float = 0.0) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    for event in events:
        await response.write(event)
        await asyncio.sleep(pause)
    await response.write_eof()
    return response


def _delta(text: str, finish: str | None = None) -> bytes:
    choice = {"index": 0, "delta": {"content": text}, "finish_reason": finish}
    return b"data: " + orjson.dumps({"choices": [choice]}) + b"\n\n"


async def test_a_refused_request_is_the_clients_400_naming_the_param(canned: Any) -> None:
    engine = await canned(_error(400, param="temperature", code="invalid_value"))
    with pytest.raises(BadRequestError) as info:
        await engine.chat(REQ)
    assert info.value.status == 400 and info.value.extra["param"] == "temperature"
    assert "nope" in info.value.detail
    with pytest.raises(BadRequestError):
        [c async for c in engine.stream(REQ)]
    too_big = await canned(_error(413))
    with pytest.raises(PayloadTooLargeError):
        await too_big.chat(REQ)


async def test_a_request_the_upstream_does_not_serve_is_the_clients_400(canned: Any) -> None:
    """llama-server started with --embeddings answers 501 to completions: no retry, no failure
    of the target's health, a 400 saying why."""
    msg = "This server does not support completions. Start it without `--embeddings`"
    engine = await canned(_error(501, message=msg), embeddings=False)
    with pytest.raises(BadRequestError, match="does not support this request: This server"):
        await engine.chat(REQ)
    with pytest.raises(BadRequestError):
        [c async for c in engine.stream(REQ)]
    with pytest.raises(BadRequestError, match="serves no embeddings"):
        await engine.embed(["x"])  # never sent: this target is configured without


async def test_retry_after_is_read_in_seconds_or_as_a_date(canned: Any) -> None:
    engine = await canned(_error(429, {"Retry-After": "7"}))
    with pytest.raises(UpstreamError) as info:
        await engine.chat(REQ)
    assert info.value.retryable and info.value.extra["upstream_status"] == 429
    assert info.value.extra["retry_after"] == 7.0
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    dated = await canned(_error(503, {"Retry-After": later}))
    with pytest.raises(UpstreamError) as info:
        await dated.chat(REQ)
    assert 25 <= info.value.extra["retry_after"] <= 31
    garbled = await canned(_error(503, {"Retry-After": "soon"}))
    with pytest.raises(UpstreamError) as info:
        await garbled.chat(REQ)
    assert "retry_after" not in info.value.extra


ANSWER = orjson.dumps(
    {"choices": [{"index": 0, "finish_reason": "stop", "message": {"content": "ok"}}]}
)


async def _closing_upstream(served: list[int]) -> asyncio.Server:
    """An upstream that answers the first request of each connection, as kept alive, and
    closes the connection when a second request comes on it: the race a client meets when an
    upstream (llama-server after a stream, uvicorn at its keep-alive timeout) closes a
    connection just as the client's pool reuses it."""

    async def read_request(reader: asyncio.StreamReader) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.lower().split(b"\r\n")
        length = next(int(line.split(b":")[1]) for line in lines if b"content-length" in line)
        await reader.readexactly(length)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        served.append(1)
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
        writer.write(head % len(ANSWER) + ANSWER)
        await writer.drain()
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            await read_request(reader)  # the pool reused the connection: close, unanswered
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def test_a_kept_alive_connection_the_upstream_closed_is_not_an_error() -> None:
    served: list[int] = []
    server = await _closing_upstream(served)
    port = server.sockets[0].getsockname()[1]
    spec = EngineSpec(kind="openai", model="m",
                      options={"base_url": f"http://127.0.0.1:{port}/v1"})  # fmt: skip
    engine = OpenAICompatEngine(spec)
    try:
        for _ in range(3):
            assert (await engine.chat(REQ)).text == "ok"
    finally:
        await engine.aclose()
        server.close()
        await server.wait_closed()
    assert len(served) == 3


async def test_a_long_stream_that_keeps_coming_is_not_cut_by_the_timeout() -> None:
    """timeout_s bounds a whole answer, but only the wait for each piece of a stream."""
    slow = EchoEngine(EngineSpec(kind="echo", model="echo", options={"delay_s": 0.1}))
    async with MockUpstream(slow) as upstream:
        spec = EngineSpec(kind="openai", model="m",
                          options={"base_url": upstream.base_url, "timeout_s": 0.4})  # fmt: skip
        engine = OpenAICompatEngine(spec)
        try:
            chunks = [c async for c in engine.stream(REQ)]  # six pieces: 0.6 s in all
            assert "".join(c.text for c in chunks) == "one two three four five six"
            assert chunks[-1].finish_reason == "stop"
            with pytest.raises(UpstreamTimeoutError):
                await engine.chat(REQ)  # a whole answer still has 0.4 s
        finally:
            await engine.aclose()


async def test_a_stream_that_stalls_mid_way_times_out(canned: Any) -> None:
    async def stall(request: web.Request) -> web.StreamResponse:
        return await _sse(request, [_delta("a"), _delta("b")], pause=1.0)

    engine = await canned(stall, timeout_s=0.3)
    with pytest.raises(UpstreamTimeoutError, match="stalled"):
        [c async for c in engine.stream(REQ)]


async def test_a_stream_cut_before_its_end_is_an_error(canned: Any) -> None:
    async def cut(request: web.Request) -> web.StreamResponse:
        return await _sse(request, [_delta("a"), _delta("b")])  # no finish_reason, no [DONE]

    engine = await canned(cut)
    with pytest.raises(UpstreamError, match="ended the stream early"):
        [c async for c in engine.stream(REQ)]

    async def no_done(request: web.Request) -> web.StreamResponse:
        return await _sse(request, [_delta("a"), _delta("b", "stop")])  # finished, no [DONE]

    finished = await canned(no_done)
    chunks = [c async for c in finished.stream(REQ)]
    assert "".join(c.text for c in chunks) == "ab" and chunks[-1].finish_reason == "stop"


async def test_a_stream_answered_without_an_event_stream(canned: Any) -> None:
    async def whole(request: web.Request) -> web.StreamResponse:
        message = {"role": "assistant", "content": "all at once"}
        choice = {"index": 0, "message": message, "finish_reason": "length"}
        usage = {"prompt_tokens": 3, "completion_tokens": 4}
        return web.json_response({"choices": [choice], "usage": usage})

    engine = await canned(whole)
    chunks = [c async for c in engine.stream(REQ)]
    assert "".join(c.text for c in chunks) == "all at once"
    assert chunks[-1].finish_reason == "length" and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 4

    async def html(request: web.Request) -> web.StreamResponse:
        return web.Response(text="<html>maintenance</html>", content_type="text/html")

    page = await canned(html)
    with pytest.raises(UpstreamError, match="not an event stream"):
        [c async for c in page.stream(REQ)]

    async def error_body(request: web.Request) -> web.StreamResponse:
        return web.json_response({"error": {"message": "model is loading"}})

    loading = await canned(error_body)
    with pytest.raises(UpstreamError, match="model is loading"):
        [c async for c in loading.stream(REQ)]
