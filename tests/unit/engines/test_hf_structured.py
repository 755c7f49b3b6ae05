"""Structured output on the hf engine: response_format json_object / json_schema by xgrammar.

The tiny random model writes noise, so these tests show the grammar, not the model: whatever it
samples, the text parses (and validates) once the grammar lets it stop.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from llmloop.core.chat import EngineSpec, GenerationRequest, SamplingParams
from llmloop.engines.hf import HFEngine
from llmloop.engines.structured import structured_available
from llmloop.errors import BadRequestError, InvalidInputError

pytest.importorskip("torch")

needs_xgrammar = pytest.mark.skipif(not structured_available(), reason="xgrammar not installed")

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "colour": {"type": "string", "enum": ["red", "green", "blue"]},
        "count": {"type": "integer", "minimum": 0, "maximum": 999},
    },
    "required": ["colour", "count"],
    "additionalProperties": False,
}
JSON_OBJECT = {"type": "json_object"}
JSON_SCHEMA = {"type": "json_schema", "json_schema": {"name": "thing", "schema": SCHEMA}}


def request(
    prompt: str,
    response_format: dict[str, Any] | None = None,
    max_tokens: int = 200,
    temperature: float = 0.0,
    seed: int | None = None,
    **fields: Any,
) -> GenerationRequest:
    sampling = SamplingParams(max_tokens=max_tokens, temperature=temperature, seed=seed)
    return GenerationRequest(
        model="m", prompt=prompt, sampling=sampling, response_format=response_format, **fields
    )


@pytest.fixture
async def engine(tiny_model_dir: Path) -> AsyncIterator[HFEngine]:
    options = {"num_threads": 1, "max_batch_size": 8}
    engine = HFEngine(EngineSpec(kind="hf", model=str(tiny_model_dir), options=options))
    await engine.start()
    yield engine
    await engine.aclose()


@needs_xgrammar
async def test_capabilities_say_structured_output(engine: HFEngine) -> None:
    assert engine.capabilities.structured_output


@needs_xgrammar
@pytest.mark.parametrize("prompt", ["Hello", "The quick brown fox"])
async def test_json_object_greedy_is_a_json_object(engine: HFEngine, prompt: str) -> None:
    result = await engine.chat(request(prompt, JSON_OBJECT))
    assert result.finish_reason == "stop"
    assert isinstance(json.loads(result.text), dict)


@needs_xgrammar
async def test_json_object_sampled_is_a_json_object(engine: HFEngine) -> None:
    # Seeds whose noise reaches a closing brace within max_tokens (a random model writes long
    # keys: inside a string, '"' is one token in hundreds).
    for prompt, seed in [("Hello", 0), ("Hello", 4), ("The quick brown fox", 1)]:
        result = await engine.chat(request(prompt, JSON_OBJECT, 300, 0.3, seed))
        assert result.finish_reason == "stop", result.text
        assert isinstance(json.loads(result.text), dict)


@needs_xgrammar
async def test_json_schema_answers_validate_greedy_and_sampled(engine: HFEngine) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    reqs = [request("Hello", JSON_SCHEMA)]
    reqs += [request("Hello", JSON_SCHEMA, temperature=1.0, seed=s) for s in range(6)]
    results = await asyncio.gather(*(engine.chat(r) for r in reqs))
    for result in results:
        assert result.finish_reason == "stop"
        jsonschema.validate(json.loads(result.text), SCHEMA)
    assert len({r.text for r in results}) > 1  # sampling still samples, inside the grammar


@needs_xgrammar
async def test_stream_gives_the_same_constrained_text(engine: HFEngine) -> None:
    for req in (request("Hello", JSON_SCHEMA), request("Hi", JSON_SCHEMA, temperature=1, seed=3)):
        chunks = [c async for c in engine.stream(req)]
        whole = await engine.chat(req)
        assert "".join(c.text for c in chunks) == whole.text
        assert chunks[-1].finish_reason == "stop"
        assert chunks[-1].usage == whole.usage


@needs_xgrammar
async def test_a_mixed_batch_leaves_unconstrained_rows_alone(engine: HFEngine) -> None:
    plain = [request(p, max_tokens=24) for p in ("The quick brown fox", "Hello", "Your order")]
    shaped = [request("Hello", JSON_SCHEMA), request("Hi", JSON_OBJECT), request("Yo", JSON_SCHEMA)]
    plain_alone = [(await engine.chat(r)).text for r in plain]
    shaped_alone = [(await engine.chat(r)).text for r in shaped]
    # Interleaved, all at once; then rows joining a running batch (prefill masking at an offset).
    interleaved = [r for pair in zip(plain, shaped, strict=True) for r in pair]
    mixed = await asyncio.gather(*(engine.chat(r) for r in interleaved))
    assert [r.text for r in mixed[0::2]] == plain_alone
    assert [r.text for r in mixed[1::2]] == shaped_alone
    first = asyncio.ensure_future(engine.chat(plain[0]))
    await asyncio.sleep(0.01)
    later = await asyncio.gather(first, engine.chat(shaped[0]), engine.chat(plain[1]))
    assert [r.text for r in later] == [plain_alone[0], shaped_alone[0], plain_alone[1]]


@needs_xgrammar
async def test_a_finished_grammar_ends_the_row_even_under_ignore_eos(
    engine: HFEngine, tiny_model_dir: Path
) -> None:
    options = {"num_threads": 1, "ignore_eos": True}
    endless = HFEngine(EngineSpec(kind="hf", model=str(tiny_model_dir), options=options))
    try:
        for req in (request("Hello", JSON_SCHEMA), request("Hello", JSON_OBJECT)):
            ended = await endless.chat(req)
            assert ended.finish_reason == "stop"
            assert ended == await engine.chat(req)  # same text, the stop token not counted
    finally:
        await endless.aclose()


@needs_xgrammar
async def test_logprobs_are_of_the_masked_distribution(engine: HFEngine) -> None:
    result = await engine.chat(request("Hello", JSON_SCHEMA, logprobs=3))
    scores = result.logprobs
    assert scores is not None and scores[0].token == "{"
    assert scores[0].top is not None and list(scores[0].top) == ["{"]  # the only allowed start
    assert scores[0].logprob == pytest.approx(0.0, abs=1e-5)


@needs_xgrammar
@pytest.mark.parametrize(
    ("response_format", "needle"),
    [
        ({"type": "json_schema", "json_schema": {"schema": {"type": "colour"}}}, "colour"),
        ({"type": "json_schema", "json_schema": {"schema": {"$ref": "#/nowhere"}}}, "nowhere"),
        ({"type": "json_schema", "json_schema": {"schema": [1]}}, "JSON Schema object"),
        ({"type": "json_schema"}, "json_schema"),
        ({"type": "yaml"}, "yaml"),
    ],
)
async def test_bad_response_formats_are_bad_requests(
    engine: HFEngine, response_format: dict[str, Any], needle: str
) -> None:
    with pytest.raises(BadRequestError, match=needle) as caught:
        await engine.chat(request("Hello", response_format))
    assert isinstance(caught.value, InvalidInputError) and caught.value.status == 400
    assert caught.value.to_dict()["param"] == "response_format"


async def test_response_format_text_changes_nothing(engine: HFEngine) -> None:
    plain = await engine.chat(request("Hello", max_tokens=16))
    text = await engine.chat(request("Hello", {"type": "text"}, max_tokens=16))
    assert text == plain


async def test_without_xgrammar_json_formats_name_the_extra(
    engine: HFEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "xgrammar", None)  # as if the extra were not installed
        structured_available.cache_clear()
        assert not engine.capabilities.structured_output
        with pytest.raises(InvalidInputError, match=r"pip install 'llmloop\[structured\]'"):
            await engine.chat(request("Hello", JSON_OBJECT))
        assert (await engine.chat(request("Hello", {"type": "text"}, max_tokens=4))).text
    structured_available.cache_clear()
