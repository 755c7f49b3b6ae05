"""The one-call rule of ``parallel_tool_calls: false`` on engine answers of every shape: whole
results, streams of call pieces, several calls in one chunk, text around the calls, and answers
that already hold one call (left as they are)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from llmloop.core.chat import (
    ChatMessage,
    GenerationChunk,
    GenerationRequest,
    GenerationResult,
    ToolCall,
    ToolCallDelta,
    Usage,
    collect_tool_calls,
)
from llmloop.services.gateway.single_call import first_call_only, first_call_stream, single_call

TOOLS = [{"type": "function", "function": {"name": "f"}}]
A, B = ToolCall(id="call_a", name="f", arguments="{}"), ToolCall(id="call_b", name="g")


def req(**fields: object) -> GenerationRequest:
    return GenerationRequest(model="m", messages=[ChatMessage(role="user", content="x")], **fields)  # type: ignore[arg-type]


def test_only_requests_that_say_false_and_may_call_are_held() -> None:
    assert single_call(req(tools=TOOLS, parallel_tool_calls=False))
    assert single_call(req(tools=TOOLS, tool_choice="auto", parallel_tool_calls=False))
    assert not single_call(req(tools=TOOLS))
    assert not single_call(req(tools=TOOLS, parallel_tool_calls=True))
    assert not single_call(req(tools=TOOLS, tool_choice="none", parallel_tool_calls=False))
    assert not single_call(req(parallel_tool_calls=False))


def test_a_whole_answer_keeps_its_first_call() -> None:
    two = GenerationResult(text="", tool_calls=[A, B], finish_reason="length")
    assert first_call_only(two) == two.model_copy(
        update={"tool_calls": [A], "finish_reason": "tool_calls"}
    )
    one = GenerationResult(text="", tool_calls=[A], finish_reason="length")
    assert first_call_only(one) is one  # one call cut by the limit stays 'length'
    plain = GenerationResult(text="hi")
    assert first_call_only(plain) is plain


async def source(*chunks: GenerationChunk) -> AsyncIterator[GenerationChunk]:
    for chunk in chunks:
        yield chunk


def piece(index: int, **fields: str) -> GenerationChunk:
    return GenerationChunk(tool_calls=[ToolCallDelta(index=index, **fields)])


END = GenerationChunk(text="tail", finish_reason="stop", usage=Usage(completion_tokens=9))


async def test_a_stream_ends_at_the_second_call() -> None:
    chunks = [c async for c in first_call_stream(source(
        GenerationChunk(text="Let me look."), piece(0, id="call_a", name="f"),
        piece(0, arguments="{}"), GenerationChunk(text="\n"), piece(1, id="call_b", name="g"),
        piece(1, arguments="{}"), GenerationChunk(text="more"), END,
    ))]  # fmt: skip
    deltas = [d for c in chunks for d in c.tool_calls or []]
    assert collect_tool_calls(deltas) == [A]
    assert "".join(c.text for c in chunks) == "Let me look.\n"
    assert chunks[-1].finish_reason == "tool_calls" and chunks[-1].usage == END.usage


async def test_several_calls_in_one_chunk_keep_the_first() -> None:
    both = GenerationChunk(tool_calls=[ToolCallDelta(index=0, id="call_a", name="f",
                                                     arguments="{}"),
                                       ToolCallDelta(index=1, id="call_b", name="g")])  # fmt: skip
    chunks = [c async for c in first_call_stream(source(both, END))]
    assert collect_tool_calls([d for c in chunks for d in c.tool_calls or []]) == [A]
    assert chunks[-1].finish_reason == "tool_calls" and chunks[-1].text == ""
    final = both.model_copy(update={"finish_reason": "length", "usage": Usage()})
    [only] = [c async for c in first_call_stream(source(final))]
    assert only.finish_reason == "tool_calls" and len(only.tool_calls or []) == 1


async def test_a_stream_with_one_call_is_unchanged() -> None:
    given = [piece(0, id="call_a", name="f"), piece(0, arguments="{}"),
             GenerationChunk(finish_reason="length", usage=Usage())]  # fmt: skip
    assert [c async for c in first_call_stream(source(*given))] == given


async def test_closing_the_stream_closes_the_engine_stream() -> None:
    closed: list[bool] = []

    async def engine() -> AsyncIterator[GenerationChunk]:
        try:
            while True:
                yield GenerationChunk(text="word ")
        finally:
            closed.append(True)

    stream = first_call_stream(engine())
    assert (await anext(stream)).text == "word "
    await stream.aclose()  # type: ignore[attr-defined]
    assert closed == [True]
