"""The llamacpp engine against a real ``llama-server`` and a real GGUF file: run where both are
given (``LLMLOOP_TEST_LLAMA_SERVER``: the binary; ``LLMLOOP_TEST_GGUF``: a model, e.g. the tiny
Llama of ``llmloop.testing.tiny`` converted with llama.cpp's ``convert_hf_to_gguf.py``), skipped
elsewhere: neither can be built or downloaded in the test run. The in-process path runs where
``llama_cpp`` (llama-cpp-python) imports and the GGUF is given."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import AsyncIterator

import pytest

from llmloop.core.chat import ChatMessage, EngineSpec, GenerationRequest, SamplingParams
from llmloop.engines.llamacpp import LlamaCppEngine
from llmloop.errors import BadRequestError

BINARY = os.environ.get("LLMLOOP_TEST_LLAMA_SERVER", "")
GGUF = os.environ.get("LLMLOOP_TEST_GGUF", "")
needs_server = pytest.mark.skipif(
    not (BINARY and GGUF), reason="set LLMLOOP_TEST_LLAMA_SERVER and LLMLOOP_TEST_GGUF"
)
needs_bindings = pytest.mark.skipif(
    not GGUF or importlib.util.find_spec("llama_cpp") is None,
    reason="needs llama-cpp-python and LLMLOOP_TEST_GGUF",
)
TOOL = {"type": "function", "function": {"name": "get_weather",  # no description: allowed
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}  # fmt: skip


def _request(**extra: object) -> GenerationRequest:
    sampling = SamplingParams(max_tokens=6, temperature=0.0)
    return GenerationRequest.model_validate({
        "model": "m", "messages": [ChatMessage(role="user", content="Hello")],
        "sampling": sampling, **extra})  # fmt: skip


@pytest.fixture
async def engine(request: pytest.FixtureRequest) -> AsyncIterator[LlamaCppEngine]:
    options = {"server_binary": BINARY, "n_ctx": 512, "parallel": 2, **request.param}
    started = LlamaCppEngine(EngineSpec(kind="llamacpp", model=GGUF, options=options))
    await started.start()
    yield started
    await started.aclose()


@needs_server
@pytest.mark.parametrize("engine", [{}], indirect=True)
async def test_chat_stream_and_tools_on_llama_server(engine: LlamaCppEngine) -> None:
    result = await engine.chat(_request())
    assert result.usage.completion_tokens == 6 and result.finish_reason == "length"
    assert result.usage.prompt_tokens > 0
    chunks = [c async for c in engine.stream(_request())]
    streamed = "".join(c.text or "" for c in chunks)
    assert streamed == result.text  # greedy: the same answer either way
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 6
    tools = await engine.chat(_request(tools=[TOOL]))  # was llama-server's 500
    assert tools.usage.prompt_tokens > result.usage.prompt_tokens  # the tool is in the prompt
    with pytest.raises(BadRequestError, match="serves no embeddings"):
        await engine.embed(["hello"])


@needs_server
@pytest.mark.parametrize("engine", [{"embeddings": True}], indirect=True)
async def test_an_embeddings_child_embeds_and_refuses_completions(engine: LlamaCppEngine) -> None:
    out = await engine.embed(["hello there", "bye"])
    assert len(out.vectors) == 2 and len(out.vectors[0]) == len(out.vectors[1]) > 0
    assert out.vectors[0] != out.vectors[1]
    with pytest.raises(BadRequestError, match="does not support this request"):
        await engine.chat(_request())


@needs_server
@pytest.mark.parametrize("engine", [{"context_shift": False}], indirect=True)
async def test_without_context_shift_a_prompt_too_long_is_refused(engine: LlamaCppEngine) -> None:
    long = _request().model_copy(
        update={"messages": [ChatMessage(role="user", content="hello " * 2000)]}
    )
    with pytest.raises(BadRequestError, match="exceeds the available context size"):
        await engine.chat(long)


@needs_bindings
async def test_the_bindings_chat_embed_and_refuse_what_they_cannot() -> None:
    spec = EngineSpec(kind="llamacpp", model=GGUF, options={"n_ctx": 256})
    chat = LlamaCppEngine(spec)
    embed = LlamaCppEngine(spec.model_copy(update={"options": {"n_ctx": 256, "embeddings": True}}))
    try:
        result = await chat.chat(_request())
        assert result.finish_reason == "length" and result.usage.prompt_tokens > 0
        chunks = [c async for c in chat.stream(_request())]
        assert "".join(c.text or "" for c in chunks) == result.text
        long = [ChatMessage(role="user", content="hello " * 2000)]
        with pytest.raises(BadRequestError, match="exceed context window"):
            await chat.chat(_request().model_copy(update={"messages": long}))
        out = await embed.embed(["hello there", "bye"])  # one pooled vector per text
        assert len(out.vectors) == 2 and all(isinstance(x, float) for x in out.vectors[0])
        with pytest.raises(BadRequestError, match="embeddings only"):  # it used to crash
            await embed.chat(_request())
    finally:
        await chat.aclose()
        await embed.aclose()
