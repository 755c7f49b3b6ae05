"""The echo engine through the shared Engine contract suite."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from llmloop.core.chat import EngineSpec
from llmloop.engines.base import Engine
from llmloop.engines.echo import EchoEngine
from llmloop.testing.engine_contract import EngineContract


class TestEchoContract(EngineContract):
    @pytest.fixture
    async def engine(self) -> AsyncIterator[Engine]:
        engine = EchoEngine(EngineSpec(kind="echo", model="echo"))
        await engine.start()
        yield engine
        await engine.aclose()
