"""Forced tool choice on the hf engine: "required" or a named function, enforced by a grammar.

The tiny random model (hermes-style template) writes noise, so these tests show the grammar, not
the model: whatever it samples, the answer is tool calls of the allowed functions whose
arguments validate. A model whose tool markers are special tokens gets them through as well.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hf_helpers import TRIP, started

from llmloop.core.chat import (
    ChatMessage,
    GenerationRequest,
    GenerationResult,
    SamplingParams,
    ToolCallDelta,
    collect_tool_calls,
)
from llmloop.engines.hf import HFEngine
from llmloop.engines.structured import structured_available
from llmloop.engines.tool_grammar import request_grammar
from llmloop.engines.tool_results import answer_parser

pytest.importorskip("torch")
jsonschema = pytest.importorskip("jsonschema")

needs_xgrammar = pytest.mark.skipif(not structured_available(), reason="xgrammar not installed")

WEATHER: dict[str, Any] = {
    "type": "object",
    # A pattern, not maxLength: xgrammar 0.2.9 lets a length-bounded string hold raw control
    # characters, which JSON forbids (the parser would then refuse the call).
    "properties": {"city": {"type": "string", "pattern": "^[A-Z][a-z]{1,11}$"}},
    "required": ["city"],
}
SCHEMAS = {"plan_trip": TRIP, "get_weather": WEATHER}
TOOLS = [
    {"type": "function", "function": {"name": name, "description": f"{name}.", "parameters": s}}
    for name, s in SCHEMAS.items()
]
SEEDS = range(5)


def chat(
    tool_choice: str | None = "plan_trip",
    temperature: float = 0.0,
    seed: int | None = None,
    max_tokens: int = 200,
    **fields: Any,
) -> GenerationRequest:
    sampling = SamplingParams(max_tokens=max_tokens, temperature=temperature, seed=seed)
    messages = [ChatMessage(role="user", content="Plan a trip to Rome")]
    fields = {"tools": TOOLS, **fields}
    return GenerationRequest(
        model="m", messages=messages, sampling=sampling, tool_choice=tool_choice, **fields
    )


def greedy_and_sampled(tool_choice: str = "plan_trip", **fields: Any) -> list[GenerationRequest]:
    sampled = [chat(tool_choice, 1.0, seed, **fields) for seed in SEEDS]
    return [chat(tool_choice, **fields), *sampled]


def check_calls(result: GenerationResult, names: set[str], max_tokens: int = 200) -> None:
    """The answer is tool calls of ``names`` only, each with arguments its schema accepts; it
    finishes with ``tool_calls``, or ``length`` where a sequence of calls ran into max_tokens."""
    cut = result.usage.completion_tokens >= max_tokens
    assert result.finish_reason == ("length" if cut else "tool_calls"), result.text
    assert result.tool_calls
    for call in result.tool_calls:
        assert call.name in names
        jsonschema.validate(json.loads(call.arguments), SCHEMAS[call.name])


def calls_of(result: GenerationResult) -> list[tuple[str, str]]:
    return [(c.name, c.arguments) for c in result.tool_calls or []]


@pytest.fixture
async def engine(tools_model_dir: Path) -> AsyncIterator[HFEngine]:
    engine = await started(tools_model_dir, max_batch_size=8)
    yield engine
    await engine.aclose()


@needs_xgrammar
async def test_a_named_tool_is_called_with_valid_arguments(engine: HFEngine) -> None:
    results = await asyncio.gather(*(engine.chat(r) for r in greedy_and_sampled()))
    for result in results:
        check_calls(result, {"plan_trip"})
    assert len({r.tool_calls[0].arguments for r in results if r.tool_calls}) > 1  # still sampled


@needs_xgrammar
async def test_without_parallel_calls_there_is_exactly_one(engine: HFEngine) -> None:
    for choice in ("plan_trip", "required"):
        reqs = greedy_and_sampled(choice, parallel_tool_calls=False)
        for result in await asyncio.gather(*(engine.chat(r) for r in reqs)):
            check_calls(result, set(SCHEMAS) if choice == "required" else {"plan_trip"})
            assert result.tool_calls is not None and len(result.tool_calls) == 1
            assert result.text == ""
            assert result.usage.completion_tokens < 200  # the grammar ended it, not the length


@needs_xgrammar
async def test_required_calls_one_of_the_tools(engine: HFEngine) -> None:
    results = await asyncio.gather(*(engine.chat(r) for r in greedy_and_sampled("required")))
    for result in results:
        check_calls(result, set(SCHEMAS))


@needs_xgrammar
async def test_stream_deltas_join_to_the_same_calls(engine: HFEngine) -> None:
    for req in (chat(), chat("required", 1.0, 3), chat(temperature=1.0, seed=4)):
        whole = await engine.chat(req)
        chunks = [c async for c in engine.stream(req)]
        deltas: list[ToolCallDelta] = [d for c in chunks for d in c.tool_calls or []]
        streamed = collect_tool_calls(deltas)
        assert calls_of(whole) and [(c.name, c.arguments) for c in streamed] == calls_of(whole)
        assert "".join(c.text for c in chunks) == whole.text
        check_calls(whole, set(SCHEMAS) if req.tool_choice == "required" else {"plan_trip"})
        assert chunks[-1].finish_reason == whole.finish_reason and chunks[-1].usage == whole.usage


@needs_xgrammar
async def test_auto_is_unconstrained_and_a_forced_choice_wins_over_response_format(
    engine: HFEngine, tools_model_dir: Path
) -> None:
    auto = [chat("auto", max_tokens=16), chat(None, max_tokens=16)]
    assert all(request_grammar(r, "hermes") is None for r in auto)
    constrained = [await engine.chat(r) for r in auto]
    raw = await started(tools_model_dir, tool_parser="none")  # as before: no grammar, no parser
    try:
        before = [await raw.chat(r) for r in auto]
    finally:
        await raw.aclose()
    assert not any(r.tool_calls for r in constrained)  # the random model writes no call
    assert [(r.text, r.finish_reason) for r in constrained] == [
        (r.text, r.finish_reason) for r in before
    ]
    shaped = chat(parallel_tool_calls=False, response_format={"type": "json_object"})
    check_calls(await engine.chat(shaped), {"plan_trip"})


async def test_without_xgrammar_a_forced_choice_is_best_effort(
    engine: HFEngine, tools_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    req = chat(max_tokens=16)
    raw = await started(tools_model_dir, tool_parser="none")
    try:
        before = await raw.chat(req)
    finally:
        await raw.aclose()
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "xgrammar", None)  # as if the extra were not installed
        structured_available.cache_clear()
        result = await engine.chat(req)  # no error: the tools are shown, nothing enforced
        assert engine.capabilities.tools and not engine.capabilities.structured_output
    structured_available.cache_clear()
    assert not result.tool_calls and (result.text, result.finish_reason) == (
        before.text,
        before.finish_reason,
    )


@needs_xgrammar
async def test_a_mixed_batch_leaves_the_plain_rows_alone(engine: HFEngine) -> None:
    hello = GenerationRequest(
        model="m",
        messages=[ChatMessage(role="user", content="Hello")],
        sampling=SamplingParams(max_tokens=24, temperature=0.0),
    )
    plain = [hello, chat("auto", max_tokens=24)]
    forced = [chat(parallel_tool_calls=False), chat("required", parallel_tool_calls=False)]
    plain_alone = [await engine.chat(r) for r in plain]
    forced_alone = [await engine.chat(r) for r in forced]
    mixed = await asyncio.gather(
        *(engine.chat(r) for pair in zip(plain, forced, strict=True) for r in pair)
    )
    assert [r.text for r in mixed[0::2]] == [r.text for r in plain_alone]
    assert [calls_of(r) for r in mixed[1::2]] == [calls_of(r) for r in forced_alone]
    assert all(calls_of(r) for r in forced_alone)
    first = asyncio.ensure_future(engine.chat(plain[0]))  # a forced row joining a running batch
    await asyncio.sleep(0.01)
    later = await asyncio.gather(first, engine.chat(forced[0]))
    assert later[0].text == plain_alone[0].text
    assert calls_of(later[1]) == calls_of(forced_alone[0])


@needs_xgrammar
async def test_the_answer_ends_with_the_grammar_even_under_ignore_eos(
    engine: HFEngine, tools_model_dir: Path
) -> None:
    endless = await started(tools_model_dir, ignore_eos=True)
    try:
        req = chat(parallel_tool_calls=False)
        ended, normal = await endless.chat(req), await engine.chat(req)
    finally:
        await endless.aclose()
    check_calls(ended, {"plan_trip"})
    assert calls_of(ended) == calls_of(normal) and ended.usage == normal.usage


@pytest.fixture(scope="module")
def special_markers_dir(tools_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tools model with ``[TOOL_CALLS]``, ``<tool_call>``, ``</tool_call>`` special tokens."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path_factory.mktemp("tiny-special-markers")
    shutil.copytree(tools_model_dir, out, dirs_exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(tools_model_dir)
    markers = ["[TOOL_CALLS]", "<tool_call>", "</tool_call>"]
    tokenizer.add_special_tokens({"additional_special_tokens": markers})
    model = AutoModelForCausalLM.from_pretrained(tools_model_dir)
    model.resize_token_embeddings(len(tokenizer))
    tokenizer.save_pretrained(out)
    model.save_pretrained(out)
    return out


@needs_xgrammar
@pytest.mark.parametrize(
    ("parser", "marker"), [("mistral", "[TOOL_CALLS]"), ("hermes", "<tool_call>")]
)
async def test_a_marker_that_is_a_special_token_is_allowed_and_kept(
    special_markers_dir: Path, parser: str, marker: str
) -> None:
    import xgrammar as xgr

    engine = await started(special_markers_dir, tool_parser=parser, max_batch_size=8)
    try:
        special = engine._tokenizer.convert_tokens_to_ids(marker)
        assert special in engine._tokenizer.all_special_ids  # skipped by a plain decode
        req = chat(parallel_tool_calls=False, logprobs=1)
        grammar = await engine._grammars.row_grammar(
            request_grammar(req, answer_parser(req, engine._tool_parser))
        )
        assert grammar is not None
        bitmask = xgr.allocate_token_bitmask(1, engine._vocab_size)
        grammar.fill(bitmask, 0)
        first = [i for i in range(engine._vocab_size) if int(bitmask[0, i // 32]) >> (i % 32) & 1]
        assert special in first and len(first) > 1  # the token, or the marker spelled out
        reqs = [
            chat(parallel_tool_calls=False, logprobs=1, temperature=1.0, seed=s) for s in range(8)
        ]
        results = await asyncio.gather(*(engine.chat(r) for r in [req, *reqs]))
    finally:
        await engine.aclose()
    for result in results:
        check_calls(result, {"plan_trip"})
    firsts = {r.logprobs[0].token for r in results if r.logprobs}
    assert marker in firsts  # some answers went through the special token, and still parsed
