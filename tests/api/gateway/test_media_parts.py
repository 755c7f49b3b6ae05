"""Image, audio and file content parts: forwarded unchanged to an upstream that takes them,
refused with a 400 by text-only engines, checked for shape, and redacted input guards rewrite
the text parts too (no unredacted copy reaches the engine)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from gw_harness import Gateway

from llmloop.core.chat import EngineSpec
from llmloop.engines.echo import EchoEngine
from llmloop.testing.mock_upstream import MockUpstream

IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}


@pytest.fixture
async def upstream() -> AsyncIterator[MockUpstream]:
    async with MockUpstream(EchoEngine(EngineSpec(kind="echo", model="up"))) as mock:
        yield mock


async def deploy_upstream(gw: Gateway, mock: MockUpstream, **extra: Any) -> None:
    target = {"engine": {"kind": "openai", "model": "up", "options": {"base_url": mock.base_url}}}
    await gw.deploy({"name": "vision", "targets": [target], **extra})


async def test_image_parts_reach_the_upstream(gw: Gateway, upstream: MockUpstream) -> None:
    await deploy_upstream(gw, upstream)
    content: list[Any] = [{"type": "text", "text": "what is in "}, IMAGE,
                          {"type": "text", "text": "this picture?"}]  # fmt: skip
    resp = await gw.client.chat.completions.create(
        model="vision", messages=[{"role": "user", "content": content}]
    )
    assert resp.choices[0].message.content == "what is in this picture?"
    assert upstream.requests[-1]["messages"][0]["content"] == content
    [trace] = await gw.traces(deployment="vision")
    assert trace["request_text"] == "user: what is in this picture?"


async def test_text_only_engines_refuse_media(gw: Gateway) -> None:
    body = {"model": "chat", "messages": [{"role": "user", "content": [IMAGE]}]}
    for stream in (False, True):
        resp = await gw.http.post("/v1/chat/completions", json={**body, "stream": stream})
        assert resp.status_code == 400
        assert resp.json()["error"]["param"] == "messages"
        assert "text only" in resp.json()["error"]["message"]
    text_parts = [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    ok = await gw.http.post("/v1/chat/completions", json={
        "model": "chat", "messages": [{"role": "user", "content": text_parts}]})  # fmt: skip
    assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["content"] == "ab"


@pytest.mark.parametrize(
    "part",
    [
        {"type": "video", "video": {}},
        {"type": "image_url"},
        {"type": "image_url", "image_url": "http://x"},
        "text",
        {"text": "no type"},
    ],
)
async def test_bad_parts_are_400(gw: Gateway, part: object) -> None:
    body = {"model": "chat", "messages": [{"role": "user", "content": [part]}]}
    resp = await gw.http.post("/v1/chat/completions", json=body)
    assert resp.status_code == 400
    assert resp.json()["error"]["param"] == "messages.[0].content.[0]"


async def test_input_redaction_rewrites_text_parts(gw: Gateway, upstream: MockUpstream) -> None:
    guard = {"kind": "deny_list", "config": {"terms": ["secret"], "action": "redact"}}
    await deploy_upstream(gw, upstream, guards=[guard])
    content = [{"type": "text", "text": "the secret word"}, IMAGE]
    await gw.client.chat.completions.create(
        model="vision",
        messages=[{"role": "user", "content": content}],  # type: ignore[list-item]
    )
    sent = upstream.requests[-1]["messages"][0]["content"]
    assert sent == [{"type": "text", "text": "the [REDACTED] word"}, IMAGE]
    assert "secret" not in str(upstream.requests[-1])
