"""The hf engine (tiny random Llama on CPU) through the shared Engine contract suite."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from llmloop.core.chat import EngineSpec, GenerationRequest
from llmloop.engines.base import Engine
from llmloop.engines.hf import HFEngine
from llmloop.testing.engine_contract import EngineContract


class TestHFContract(EngineContract):
    fixed_length = True

    @pytest.fixture
    async def engine(self, tiny_model_dir: Path) -> AsyncIterator[Engine]:
        options = {"max_batch_size": 4, "ignore_eos": True, "num_threads": 1}
        engine = HFEngine(EngineSpec(kind="hf", model=str(tiny_model_dir), options=options))
        await engine.start()
        yield engine
        await engine.aclose()

    def bad_request(self) -> GenerationRequest:
        return self.request(prompt="word " * 2000)  # longer than the 512-token context

    async def check_cancelled(self, engine: Engine) -> None:
        assert isinstance(engine, HFEngine)
        scheduler = engine._scheduler
        assert scheduler is not None
        for _ in range(200):
            if not scheduler.batch.rows:
                return
            await asyncio.sleep(0.01)
        raise AssertionError("the cancelled row is still decoding")
