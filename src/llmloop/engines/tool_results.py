"""Tool calls in engine answers: a tool parser applied to a whole result or to a chunk stream.

The local engines (hf, vllm) produce plain text; when a request offers tools, these wrappers
split that text into content and tool calls with :mod:`llmloop.engines.tool_parsers`, and set
the finish reason to ``tool_calls`` when the model made any and stopped by itself. An answer cut
by the token limit keeps ``length`` even when it holds complete calls (as OpenAI reports it): the
calls it got to may not be all it meant to make. Requests without tools never come here. Nothing
here renders prompts or talks to a model.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator

from llmloop.core.chat import FinishReason, GenerationChunk, GenerationRequest, GenerationResult
from llmloop.engines.tool_parsers import ToolCallStreamParser, ToolParserName, parse_tool_calls


def answer_parser(req: GenerationRequest, parser: ToolParserName | None) -> ToolParserName | None:
    """The parser for ``req``'s answer: only chats that offer tools (and echo nothing) get one."""
    if req.wants_tools and req.messages is not None and not req.echo:
        return parser
    return None


def tool_finish_reason(reason: FinishReason, called: bool) -> FinishReason:
    """``tool_calls`` when calls were made and the answer ended normally, else ``reason`` (a
    ``length`` cut stays ``length``)."""
    return "tool_calls" if called and reason == "stop" else reason


def parse_result(result: GenerationResult, parser: ToolParserName) -> GenerationResult:
    """``result`` with its text split into content and tool calls."""
    parsed = parse_tool_calls(result.text, parser)
    return result.model_copy(
        update={
            "text": parsed.content,
            "tool_calls": parsed.tool_calls or None,
            "finish_reason": tool_finish_reason(result.finish_reason, bool(parsed.tool_calls)),
        }
    )


async def parse_stream(
    chunks: AsyncIterator[GenerationChunk], parser: ToolParserName
) -> AsyncGenerator[GenerationChunk, None]:
    """Re-chunk a text stream into content chunks and one chunk per finished tool call.

    The last chunk keeps its place (the finish reason and usage come last, with any content
    held until the end); closing this stream closes ``chunks``.
    """
    stream = ToolCallStreamParser(parser)
    try:
        async for chunk in chunks:
            piece = stream.feed(chunk.text)
            content, deltas = piece.content, piece.tool_calls
            if chunk.finish_reason is not None:
                tail = stream.finish()
                content, deltas = content + tail.content, deltas + tail.tool_calls
            if chunk.finish_reason is None and content:
                yield GenerationChunk(text=content)
            for delta in deltas:
                yield GenerationChunk(tool_calls=[delta])
            if chunk.finish_reason is not None:
                reason = tool_finish_reason(chunk.finish_reason, stream.calls_made > 0)
                yield GenerationChunk(text=content, finish_reason=reason, usage=chunk.usage)
                return
    finally:
        close = getattr(chunks, "aclose", None)
        if close is not None:
            await close()


async def maybe_parse_stream(
    chunks: AsyncGenerator[GenerationChunk, None], parser: ToolParserName | None
) -> AsyncGenerator[GenerationChunk, None]:
    """``chunks`` through :func:`parse_stream` when there is a parser, else as they are; closing
    this stream closes ``chunks`` (an engine's stream: the generation is cancelled)."""
    parsed = chunks if parser is None else parse_stream(chunks, parser)
    async with contextlib.aclosing(parsed):
        async for chunk in parsed:
            yield chunk
