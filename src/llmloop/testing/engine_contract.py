"""The Engine contract as a reusable pytest suite: subclass ``EngineContract`` and give an engine.

Every backend (echo, hf, openai, a third-party plugin) runs the same tests: chat, streaming with
``finish_reason`` and usage on the last chunk only, stop sequences, ``max_tokens`` ending in
``length``, early close of a stream, concurrency that does not change greedy answers, logprobs
and echo, embeddings (when the engine's capabilities say so) and refusal of a bad request.
A subclass provides the ``engine`` fixture (started, closed after) and may override the hooks.
It is not a benchmark and asserts nothing about speed.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator

import pytest

from llmloop.core.chat import ChatMessage, GenerationChunk, GenerationRequest, SamplingParams
from llmloop.engines.base import Engine
from llmloop.errors import LlmloopError


class EngineContract:
    """Tests every Engine must pass. Subclasses override ``engine`` and, if needed, the hooks."""

    #: A prompt the engine answers with several tokens (the echo engine repeats it).
    prompt = "The quick brown fox jumps over the lazy dog"
    #: Whether the engine always produces ``max_tokens`` tokens (no early end-of-sequence).
    fixed_length = False

    @pytest.fixture
    async def engine(self) -> AsyncIterator[Engine]:
        raise NotImplementedError("subclasses provide the engine fixture")
        yield  # pragma: no cover

    def bad_request(self) -> GenerationRequest | None:
        """A request this engine must refuse with an LlmloopError (None: skip that test)."""
        return None

    async def prepare_bad_request(self, engine: Engine) -> None:
        """Arrange for :meth:`bad_request` to be refused (e.g. tell a mock upstream to fail)."""

    async def check_cancelled(self, engine: Engine) -> None:
        """After an early stream close: assert the engine dropped the generation."""

    def request(self, max_tokens: int = 8, **kwargs: object) -> GenerationRequest:
        sampling = SamplingParams(max_tokens=max_tokens, temperature=0.0)
        fields: dict[str, object] = {"model": "test", "sampling": sampling}
        if "prompt" not in kwargs:
            fields["messages"] = [ChatMessage(role="user", content=self.prompt)]
        fields.update(kwargs)
        return GenerationRequest.model_validate(fields)

    async def test_chat_answers_with_usage(self, engine: Engine) -> None:
        result = await engine.chat(self.request())
        assert result.finish_reason in ("stop", "length")
        assert result.usage.prompt_tokens > 0
        assert 0 <= result.usage.completion_tokens <= 8
        assert result.logprobs is None

    async def test_stream_matches_chat_and_ends_with_usage(self, engine: Engine) -> None:
        req = self.request(max_tokens=6)
        chunks: list[GenerationChunk] = [c async for c in engine.stream(req)]
        assert chunks, "a stream yields at least its final chunk"
        assert all(c.finish_reason is None and c.usage is None for c in chunks[:-1])
        last = chunks[-1]
        assert last.finish_reason in ("stop", "length")
        assert last.usage is not None and last.usage.prompt_tokens > 0
        whole = await engine.chat(req)
        assert "".join(c.text for c in chunks) == whole.text
        assert last.usage == whole.usage

    async def test_max_tokens_ends_with_length(self, engine: Engine) -> None:
        result = await engine.chat(self.request(max_tokens=2))
        if self.fixed_length or result.finish_reason == "length":
            assert result.finish_reason == "length"
            assert result.usage.completion_tokens == 2
        else:
            assert result.usage.completion_tokens <= 2

    async def test_stop_sequence_cuts_and_is_not_emitted(self, engine: Engine) -> None:
        full = await engine.chat(self.request(max_tokens=12, prompt=self.prompt))
        text = full.text
        if len(text.strip()) < 4:
            pytest.skip("the engine's answer is too short to place a stop sequence in it")
        cut = len(text) // 2
        stop = text[cut : cut + 2]
        expected = text[: text.index(stop)]
        req = self.request(max_tokens=12, prompt=self.prompt)
        req = req.model_copy(update={"sampling": req.sampling.model_copy(update={"stop": [stop]})})
        result = await engine.chat(req)
        assert result.text == expected
        assert result.finish_reason == "stop"
        streamed = "".join([c.text async for c in engine.stream(req)])
        assert streamed == expected

    async def test_early_close_cancels_and_engine_stays_usable(self, engine: Engine) -> None:
        stream = engine.stream(self.request(max_tokens=200))
        first = await stream.__anext__()
        assert first.finish_reason is None or first.finish_reason in ("stop", "length")
        await stream.aclose()  # type: ignore[attr-defined]
        await self.check_cancelled(engine)
        after = await engine.chat(self.request(max_tokens=3))
        assert after.finish_reason in ("stop", "length")

    async def test_concurrent_greedy_answers_match_sequential(self, engine: Engine) -> None:
        reqs = [self.request(max_tokens=5, prompt=f"{self.prompt} {i}") for i in range(6)]
        alone = [await engine.chat(r) for r in reqs]
        together = await asyncio.gather(*(engine.chat(r) for r in reqs))
        assert [r.text for r in together] == [r.text for r in alone]

    async def test_logprobs_with_echo_score_the_prompt(self, engine: Engine) -> None:
        if not engine.capabilities.logprobs:
            pytest.skip("engine does not return logprobs")
        req = self.request(max_tokens=2, prompt=self.prompt, logprobs=2, echo=True)
        result = await engine.chat(req)
        assert result.text.startswith(self.prompt)
        assert result.logprobs is not None
        usage = result.usage
        assert len(result.logprobs) == usage.prompt_tokens + usage.completion_tokens
        assert result.logprobs[0].logprob is None
        assert all(t.logprob is not None and t.logprob <= 0.0 for t in result.logprobs[1:])

    async def test_logprobs_without_echo_cover_the_output(self, engine: Engine) -> None:
        if not engine.capabilities.logprobs:
            pytest.skip("engine does not return logprobs")
        result = await engine.chat(self.request(max_tokens=3, prompt=self.prompt, logprobs=1))
        assert result.logprobs is not None
        assert len(result.logprobs) == result.usage.completion_tokens
        assert all(t.logprob is not None and t.logprob <= 0.0 for t in result.logprobs)

    async def test_embeddings_are_unit_vectors(self, engine: Engine) -> None:
        if not engine.capabilities.embeddings:
            pytest.skip("engine does not serve embeddings")
        result = await engine.embed(["hello there", "a different text", "hello there"])
        assert len(result.vectors) == 3
        for vector in result.vectors:
            assert math.isclose(math.sqrt(sum(x * x for x in vector)), 1.0, rel_tol=1e-4)
        assert result.vectors[0] == pytest.approx(result.vectors[2], abs=1e-5)
        assert result.vectors[0] != pytest.approx(result.vectors[1], abs=1e-5)

    async def test_refuses_bad_request(self, engine: Engine) -> None:
        bad = self.bad_request()
        if bad is None:
            pytest.skip("no engine-level bad request defined for this engine")
        await self.prepare_bad_request(engine)
        with pytest.raises(LlmloopError):
            await engine.chat(bad)
