"""A tool parser over whole results and chunk streams (what the hf and vllm engines return), and
the chat-template messages and tools both engines render."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from llmloop.core.chat import (
    ChatMessage,
    GenerationChunk,
    GenerationRequest,
    GenerationResult,
    ToolCall,
    Usage,
    collect_tool_calls,
)
from llmloop.engines.chat_template import template_messages, template_tools
from llmloop.engines.tool_results import parse_result, parse_stream
from llmloop.errors import InvalidInputError

CALL = '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>'
ANSWER = f"Let me look.\n{CALL}\n{CALL.replace('Paris', 'Rome')}"
TOOLS = [
    {"type": "function", "function": {"name": name, "parameters": {"type": "object"}}}
    for name in ("get_weather", "get_time")
]


async def chunks_of(text: str, size: int, reason: str = "stop") -> AsyncIterator[GenerationChunk]:
    pieces = [text[i : i + size] for i in range(0, len(text), size)] or [""]
    for piece in pieces[:-1]:
        yield GenerationChunk(text=piece)
    yield GenerationChunk(
        text=pieces[-1], finish_reason=reason, usage=Usage(prompt_tokens=3, completion_tokens=9)
    )


def test_a_result_with_calls_finishes_with_tool_calls() -> None:
    result = parse_result(GenerationResult(text=ANSWER, usage=Usage(completion_tokens=9)), "hermes")
    assert result.text == "Let me look."
    assert result.finish_reason == "tool_calls"
    assert result.usage.completion_tokens == 9
    assert result.tool_calls is not None
    assert [(c.name, c.arguments) for c in result.tool_calls] == [
        ("get_weather", '{"city":"Paris"}'),
        ("get_weather", '{"city":"Rome"}'),
    ]


def test_a_result_without_calls_is_unchanged() -> None:
    before = GenerationResult(text="Plain answer. ", finish_reason="length")
    assert parse_result(before, "hermes") == before


@pytest.mark.parametrize("size", [1, 3, 7, 1000])
async def test_a_stream_gives_content_then_one_chunk_per_call_then_the_end(size: int) -> None:
    chunks = [c async for c in parse_stream(chunks_of(ANSWER, size), "hermes")]
    *body, last = chunks
    assert all(c.finish_reason is None and c.usage is None for c in body)
    assert last.finish_reason == "tool_calls" and last.usage == Usage(
        prompt_tokens=3, completion_tokens=9
    )
    assert "".join(c.text for c in chunks) == "Let me look."
    deltas = [d for c in chunks for d in c.tool_calls or []]
    assert all(len(c.tool_calls or []) <= 1 for c in chunks)
    calls = collect_tool_calls(deltas)
    assert [(c.name, c.arguments) for c in calls] == [
        ("get_weather", '{"city":"Paris"}'),
        ("get_weather", '{"city":"Rome"}'),
    ]
    assert len({c.id for c in calls}) == 2


async def test_a_stream_without_calls_keeps_its_text_and_reason() -> None:
    text = "Nothing to call <tool but text. "
    chunks = [c async for c in parse_stream(chunks_of(text, 4, "length"), "hermes")]
    assert "".join(c.text for c in chunks) == text
    assert chunks[-1].finish_reason == "length"
    assert not any(c.tool_calls for c in chunks)


def test_calls_cut_by_the_token_limit_finish_with_length() -> None:
    # A forced call sequence (parallel calls allowed) that ran into max_tokens: the complete
    # calls come back, but the answer was cut, so it says so (as OpenAI does).
    cut = GenerationResult(text=f'{CALL}\n{CALL}\n<tool_call>{{"na', finish_reason="length")
    result = parse_result(cut, "hermes")
    assert result.finish_reason == "length"
    assert result.tool_calls is not None and len(result.tool_calls) == 2


async def test_a_stream_of_calls_cut_by_the_token_limit_finishes_with_length() -> None:
    text = f'{CALL}\n{CALL}\n<tool_call>{{"na'
    chunks = [c async for c in parse_stream(chunks_of(text, 6, "length"), "hermes")]
    assert chunks[-1].finish_reason == "length"
    assert len(collect_tool_calls([d for c in chunks for d in c.tool_calls or []])) == 2


async def test_an_unterminated_call_comes_back_as_content_in_the_last_chunk() -> None:
    text = 'Hi <tool_call>{"name": "f", "argu'
    chunks = [c async for c in parse_stream(chunks_of(text, 5, "length"), "hermes")]
    assert "".join(c.text for c in chunks) == text
    assert chunks[-1].finish_reason == "length"


async def test_closing_the_parsed_stream_closes_the_source() -> None:
    closed: list[bool] = []

    async def source() -> AsyncIterator[GenerationChunk]:
        try:
            for _ in range(100):
                yield GenerationChunk(text="word ")
        finally:
            closed.append(True)

    stream = parse_stream(source(), "hermes")
    assert (await stream.__anext__()).text == "word"
    await stream.aclose()
    assert closed == [True]


def test_template_messages_carry_calls_and_name_the_tool_turns() -> None:
    calls = [
        ToolCall(id="call_1", name="get_weather", arguments='{"city": "Paris"}'),
        ToolCall(id="call_2", name="get_time", arguments="not json"),
    ]
    messages = [
        ChatMessage(role="user", content="Weather?", name="ann"),
        ChatMessage(role="assistant", content="", tool_calls=calls),
        ChatMessage(role="tool", content="sunny", tool_call_id="call_1"),
        ChatMessage(role="tool", content="noon", tool_call_id="call_2", name="clock"),
    ]
    user, assistant, weather, clock = template_messages(messages)
    assert user == {"role": "user", "content": "Weather?"}  # as before tools existed
    assert assistant["tool_calls"] == [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": {"city": "Paris"}},
        },
        {
            "id": "call_2",
            "type": "function",
            "function": {"name": "get_time", "arguments": "not json"},
        },
    ]
    assert weather == {
        "role": "tool",
        "content": "sunny",
        "tool_call_id": "call_1",
        "name": "get_weather",
    }
    assert clock["name"] == "clock"


def test_template_tools_follow_tool_choice() -> None:
    def request(choice: str | None) -> GenerationRequest:
        messages = [ChatMessage(role="user", content="hi")]
        return GenerationRequest(model="m", messages=messages, tools=TOOLS, tool_choice=choice)

    assert template_tools(request(None)) == TOOLS
    assert template_tools(request("required")) == TOOLS
    assert template_tools(request("none")) is None
    assert template_tools(request("get_time")) == [TOOLS[1]]
    with pytest.raises(InvalidInputError, match="get_date"):
        template_tools(request("get_date"))
