"""The openai engine's error mapping, keys, timeouts and embeddings against a mock upstream."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from llmloop.core.chat import ChatMessage, EngineSpec, GenerationRequest, SamplingParams
from llmloop.engines.echo import EchoEngine
from llmloop.engines.openai_compat import OpenAICompatEngine
from llmloop.errors import ConfigError, UpstreamError, UpstreamTimeoutError
from llmloop.testing.mock_upstream import MockUpstream

REQ = GenerationRequest(
    model="m",
    messages=[ChatMessage(role="user", content="hi there")],
    sampling=SamplingParams(max_tokens=5),
)


@pytest.fixture
async def upstream() -> AsyncIterator[MockUpstream]:
    async with MockUpstream(EchoEngine(EngineSpec(kind="echo", model="echo"))) as mock:
        yield mock


def make(base_url: str, **options: Any) -> OpenAICompatEngine:
    return OpenAICompatEngine(
        EngineSpec(kind="openai", model="echo", options={"base_url": base_url, **options})
    )


@pytest.mark.parametrize(
    ("status", "retryable"), [(429, True), (500, True), (503, True), (401, False), (404, False)]
)
async def test_upstream_statuses_map_to_upstream_errors(
    upstream: MockUpstream, status: int, retryable: bool
) -> None:
    engine = make(upstream.base_url)
    upstream.fail_next = [status]
    try:
        with pytest.raises(UpstreamError) as info:
            await engine.chat(REQ)
        assert info.value.retryable is retryable
        assert f"mock upstream failure {status}" in info.value.detail
        upstream.fail_next = [status]
        with pytest.raises(UpstreamError):
            [c async for c in engine.stream(REQ)]
    finally:
        await engine.aclose()


async def test_a_stalled_upstream_times_out(upstream: MockUpstream) -> None:
    upstream.stall_s = 1.0
    engine = make(upstream.base_url, timeout_s=0.2)
    try:
        with pytest.raises(UpstreamTimeoutError):
            await engine.chat(REQ)
    finally:
        await engine.aclose()


async def test_an_unreachable_upstream_is_retryable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    engine = make(f"http://127.0.0.1:{port}/v1")
    try:
        with pytest.raises(UpstreamError) as info:
            await engine.chat(REQ)
        assert info.value.retryable
    finally:
        await engine.aclose()


async def test_the_api_key_comes_from_the_named_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    async with MockUpstream(EchoEngine(EngineSpec(kind="echo")), api_key="s3cret") as mock:
        monkeypatch.setenv("MOCK_KEY", "s3cret")
        engine = make(mock.base_url, api_key_env="MOCK_KEY")
        try:
            assert (await engine.chat(REQ)).text == "hi there"
        finally:
            await engine.aclose()
        monkeypatch.setenv("MOCK_KEY", "wrong")
        engine = make(mock.base_url, api_key_env="MOCK_KEY")
        try:
            with pytest.raises(UpstreamError, match="401"):
                await engine.chat(REQ)
        finally:
            await engine.aclose()
        monkeypatch.delenv("MOCK_KEY")
        with pytest.raises(ConfigError, match="MOCK_KEY"):
            await make(mock.base_url, api_key_env="MOCK_KEY").start()


async def test_sampling_and_adapter_go_on_the_wire(upstream: MockUpstream) -> None:
    engine = make(upstream.base_url)
    sampling = SamplingParams(
        max_tokens=3, temperature=0.5, top_k=4, stop=["x"], seed=9, repetition_penalty=1.1
    )
    try:
        await engine.chat(REQ.model_copy(update={"sampling": sampling, "adapter": "my-lora"}))
    finally:
        await engine.aclose()
    body = upstream.requests[-1]
    assert body["model"] == "my-lora"
    assert (body["max_tokens"], body["temperature"], body["top_k"], body["stop"], body["seed"]) == (
        3,
        0.5,
        4,
        ["x"],
        9,
    )
    assert body["repetition_penalty"] == 1.1


async def test_embeddings_come_back_in_order(upstream: MockUpstream) -> None:
    engine = make(upstream.base_url)
    try:
        result = await engine.embed(["a", "b"])
        direct = await upstream.engine.embed(["a", "b"])
        assert len(result.vectors) == 2
        for got, want in zip(result.vectors, direct.vectors, strict=True):
            assert got == pytest.approx(want)
    finally:
        await engine.aclose()


def test_unknown_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="base_url"):
        OpenAICompatEngine(EngineSpec(kind="openai", model="m", options={}))
    with pytest.raises(ConfigError, match="colour"):
        make("http://x/v1", colour="blue")


async def test_token_id_prompts_go_upstream_as_ids(upstream: MockUpstream) -> None:
    engine = make(upstream.base_url)
    try:
        req = GenerationRequest(model="m", prompt="", prompt_ids=[7, 8, 9])
        result = await engine.chat(req)
        assert upstream.requests[-1]["prompt"] == [7, 8, 9]
        assert result.text == "7 8 9"
    finally:
        await engine.aclose()
