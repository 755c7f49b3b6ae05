"""An openai upstream that refuses, limits or breaks, as the official client sees it through the
gateway: a 429 or 503 stays one (with ``Retry-After``, waited before retrying), a refused request
is the client's 400 naming the upstream's param (not retried), a stream cut short is an error."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import AsyncIterator

import openai
import orjson
import pytest
from aiohttp import web
from gw_harness import Gateway

MSG = [{"role": "user", "content": "hi"}]


class Upstream:
    """Answers by the request's model name; notes when each model was asked."""

    def __init__(self) -> None:
        self.seen: dict[str, list[float]] = defaultdict(list)
        self.base_url = ""

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        model = body["model"]
        self.seen[model].append(time.monotonic())
        if model == "limited":
            return _error(429, "slow down", {"Retry-After": "1"})
        if model == "busy":
            return _error(503, "overloaded", {"Retry-After": "30"})
        if model == "picky":
            return _error(400, "temperature is too high", param="temperature")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        delta = {"choices": [{"index": 0, "delta": {"content": "part"}, "finish_reason": None}]}
        await response.write(b"data: " + orjson.dumps(delta) + b"\n\n")
        await response.write_eof()  # model 'cut': no finish_reason, no [DONE]
        return response


def _error(status: int, message: str, headers: dict[str, str] | None = None,
           param: str | None = None) -> web.Response:  # fmt: skip
    body = orjson.dumps({"error": {"message": message, "type": "x", "param": param}})
    return web.Response(body=body, status=status, headers=headers, content_type="application/json")


@pytest.fixture
async def upstream(gw: Gateway) -> AsyncIterator[Upstream]:
    mock = Upstream()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", mock.chat)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    mock.base_url = f"http://127.0.0.1:{port}/v1"
    for model in ("limited", "busy", "picky", "cut"):
        target = {"engine": {"kind": "openai", "model": model,
                             "options": {"base_url": mock.base_url}}}  # fmt: skip
        await gw.deploy({"name": model, "targets": [target], "breaker": {"failure_threshold": 50},
                         "retry": {"max_retries": 1, "backoff_s": 0.01}})  # fmt: skip
    yield mock
    await runner.cleanup()


async def _error_of(gw: Gateway, model: str, stream: bool = False) -> openai.APIStatusError:
    with pytest.raises(openai.APIStatusError) as info:
        if stream:
            async for _ in await gw.client.chat.completions.create(
                model=model, messages=MSG, stream=True
            ):
                pass
        else:
            await gw.client.chat.completions.create(model=model, messages=MSG)
    return info.value


async def test_an_upstream_429_is_a_429_after_waiting_its_retry_after(
    gw: Gateway, upstream: Upstream
) -> None:
    for stream in (False, True):
        upstream.seen.clear()
        err = await _error_of(gw, "limited", stream)
        assert isinstance(err, openai.RateLimitError)
        assert err.response.headers["retry-after"] == "1"
        first, second = upstream.seen["limited"]
        assert second - first >= 0.9  # the retry waited what the upstream asked, not 0.01 s


async def test_an_upstream_503_asking_for_a_long_pause_is_a_503_without_a_retry(
    gw: Gateway, upstream: Upstream
) -> None:
    err = await _error_of(gw, "busy")
    assert err.status_code == 503 and err.response.headers["retry-after"] == "30"
    assert len(upstream.seen["busy"]) == 1


async def test_a_refused_request_is_the_clients_400_and_not_retried(
    gw: Gateway, upstream: Upstream
) -> None:
    for stream in (False, True):
        err = await _error_of(gw, "picky", stream)
        assert isinstance(err, openai.BadRequestError)
        assert "temperature is too high" in err.message
        assert err.body["param"] == "temperature"  # type: ignore[index]
    assert len(upstream.seen["picky"]) == 2  # once per request


async def test_a_stream_cut_short_is_an_error_not_a_finished_answer(
    gw: Gateway, upstream: Upstream
) -> None:
    stream = await gw.client.chat.completions.create(model="cut", messages=MSG, stream=True)
    texts: list[str] = []
    with pytest.raises(openai.APIError, match="ended the stream early"):
        async for chunk in stream:
            texts += [c.delta.content or "" for c in chunk.choices]
    assert "".join(texts) == "part"
    [trace] = await gw.traces(deployment="cut")
    assert trace["status"] == "error" and "ended the stream early" in trace["error"]
