"""Tools in the hf engine: the tiny model with a hermes-style template renders tools, tool calls
and tool turns, reports the tools capability, and answers through the tool parser; a template
without tools refuses them clearly."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hf_helpers import started

from llmloop.core.chat import (
    ChatMessage,
    EngineSpec,
    GenerationRequest,
    SamplingParams,
    ToolCall,
)
from llmloop.engines.hf import HFEngine
from llmloop.errors import ConfigError, InvalidInputError

pytest.importorskip("torch")

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": name,
            "description": f"The {what} now.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
    for name, what in (("get_weather", "weather"), ("get_local_time", "time"))
]
CONVERSATION = [
    ChatMessage(role="user", content="What is the weather in Paris?"),
    ChatMessage(
        role="assistant",
        content="",
        tool_calls=[ToolCall(id="call_7", name="get_weather", arguments='{"city":"Paris"}')],
    ),
    ChatMessage(role="tool", content="sunny and warm", tool_call_id="call_7"),
]


def tool_request(**kwargs: Any) -> GenerationRequest:
    sampling = SamplingParams(max_tokens=8, temperature=0.0)
    fields: dict[str, Any] = {"messages": CONVERSATION, "tools": TOOLS, **kwargs}
    return GenerationRequest(model="m", sampling=sampling, **fields)


@pytest.fixture
async def engine(tools_model_dir: Path) -> AsyncIterator[HFEngine]:
    engine = await started(tools_model_dir, max_batch_size=2)
    yield engine
    await engine.aclose()


def prompt_text(engine: HFEngine, req: GenerationRequest) -> str:
    return str(engine._tokenizer.decode(engine._prompt_ids(req), skip_special_tokens=False))


async def test_the_prompt_shows_the_tools_the_calls_and_the_tool_turns(engine: HFEngine) -> None:
    prompt = prompt_text(engine, tool_request())
    assert '"name": "get_weather"' in prompt and "get_local_time" in prompt
    assert (
        '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>' in prompt
    )
    assert '<tool_response name="get_weather">sunny and warm</tool_response>' in prompt
    assert prompt.endswith("<|assistant|>")


async def test_a_forced_tool_is_the_only_one_shown(engine: HFEngine) -> None:
    prompt = prompt_text(engine, tool_request(tool_choice="get_local_time"))
    assert "The time now." in prompt and "The weather now." not in prompt
    with pytest.raises(InvalidInputError, match="get_date"):
        engine._prompt_ids(tool_request(tool_choice="get_date"))


async def test_without_tools_the_prompt_is_as_before(engine: HFEngine) -> None:
    messages = [ChatMessage(role="user", content="Hello")]
    plain = GenerationRequest(model="m", messages=messages)
    declined = GenerationRequest(model="m", messages=messages, tools=TOOLS, tool_choice="none")
    assert prompt_text(engine, plain) == "<|user|>Hello<|end|><|assistant|>"
    assert prompt_text(engine, declined) == prompt_text(engine, plain)


async def test_the_tools_capability_follows_the_parser(
    engine: HFEngine, tiny_model_dir: Path, tools_model_dir: Path
) -> None:
    assert engine.capabilities.tools  # auto: the template writes <tool_call>
    assert engine._tool_parser == "hermes"
    plain = await started(tiny_model_dir)
    assert not plain.capabilities.tools  # auto: the plain template has no tool format
    await plain.aclose()
    forced = HFEngine(
        EngineSpec(kind="hf", model=str(tiny_model_dir), options={"tool_parser": "mistral"})
    )
    assert forced.capabilities.tools
    off = await started(tools_model_dir, tool_parser="none")
    assert not off.capabilities.tools
    await off.aclose()


async def test_answers_to_tool_requests_go_through_the_parser(
    engine: HFEngine, tools_model_dir: Path
) -> None:
    req = tool_request()
    result = await engine.chat(req)
    assert result.finish_reason in ("stop", "length", "tool_calls")
    chunks = [c async for c in engine.stream(req)]
    assert "".join(c.text for c in chunks) == result.text
    assert chunks[-1].finish_reason == result.finish_reason
    assert chunks[-1].usage == result.usage
    # The random model writes no call, so the parsed text is the raw text of a parser-less engine.
    raw = await started(tools_model_dir, tool_parser="none")
    try:
        raw_result = await raw.chat(req)
    finally:
        await raw.aclose()
    if not result.tool_calls:
        assert (result.text, result.finish_reason) == (raw_result.text, raw_result.finish_reason)


async def test_a_template_without_tools_refuses_them(tiny_model_dir: Path) -> None:
    engine = await started(tiny_model_dir)
    try:
        with pytest.raises(InvalidInputError, match="does not render tools"):
            await engine.chat(tool_request())
        with pytest.raises(InvalidInputError, match="does not render tools"):
            [c async for c in engine.stream(tool_request())]
        declined = await engine.chat(tool_request(tool_choice="none"))  # tools not shown: fine
        assert declined.tool_calls is None
    finally:
        await engine.aclose()


async def test_template_errors_are_invalid_input(tools_model_dir: Path) -> None:
    engine = await started(tools_model_dir)
    engine._tokenizer.chat_template = "{{ raise_exception('roles must alternate') }}"
    try:
        with pytest.raises(InvalidInputError, match="roles must alternate"):
            await engine.chat(tool_request(tool_choice="none"))
    finally:
        await engine.aclose()


def test_an_unknown_tool_parser_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="tool_parser"):
        HFEngine(EngineSpec(kind="hf", model="m", options={"tool_parser": "xml"}))
