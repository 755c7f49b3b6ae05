"""The openai engine, against a mock upstream wrapping the echo engine, through the contract."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from llmloop.core.chat import EngineSpec, GenerationRequest
from llmloop.engines.base import Engine
from llmloop.engines.echo import EchoEngine
from llmloop.engines.openai_compat import OpenAICompatEngine
from llmloop.testing.engine_contract import EngineContract
from llmloop.testing.mock_upstream import MockUpstream


class TestOpenAIContract(EngineContract):
    @pytest.fixture
    async def upstream(self) -> AsyncIterator[MockUpstream]:
        echo = EchoEngine(EngineSpec(kind="echo", model="echo", options={"delay_s": 0.002}))
        async with MockUpstream(echo) as mock:
            yield mock

    @pytest.fixture
    async def engine(self, upstream: MockUpstream) -> AsyncIterator[Engine]:
        spec = EngineSpec(kind="openai", model="echo", options={"base_url": upstream.base_url})
        engine = OpenAICompatEngine(spec)
        engine.upstream = upstream  # type: ignore[attr-defined]
        await engine.start()
        yield engine
        await engine.aclose()

    def bad_request(self) -> GenerationRequest:
        return self.request()

    async def prepare_bad_request(self, engine: Engine) -> None:
        engine.upstream.fail_next = [400]  # type: ignore[attr-defined]

    async def check_cancelled(self, engine: Engine) -> None:
        upstream: MockUpstream = engine.upstream  # type: ignore[attr-defined]
        for _ in range(200):
            if upstream.cancelled:
                return
            await asyncio.sleep(0.01)
        raise AssertionError("the upstream never saw the client go away")
