"""``parallel_tool_calls: false`` under ``tool_choice`` "auto", enforced for every engine.

OpenAI (and vLLM) answer such a request with at most one tool call. A forced choice on the hf
engine is held to one call by its grammar, and an OpenAI-compatible upstream gets the field as
sent, but a local model left to "auto" writes as many calls as it likes, so the gateway keeps
the first complete call and drops the rest: a whole answer loses its later calls; a stream stops
emitting at the second call's first piece (the text and calls after it are dropped, the final
chunk's usage still counts every generated token). Where calls were dropped, the answer ended at
its first call as the client sees it, so it finishes with ``tool_calls`` (not the engine's
``length``). On an answer with one call or none (what an upstream that honours the field sends)
this changes nothing, so it is safe to apply to every engine. Guards, the cache and the trace see
the answer after this step. This module does not parse calls out of text (``engines``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

from llmloop.core.chat import GenerationChunk, GenerationRequest, GenerationResult
from llmloop.engines.base import Engine


def single_call(req: GenerationRequest) -> bool:
    """Whether ``req``'s answer may hold at most one tool call."""
    return req.parallel_tool_calls is False and req.wants_tools


def first_call_only(result: GenerationResult) -> GenerationResult:
    """``result`` with only its first tool call."""
    calls = result.tool_calls
    if calls is None or len(calls) < 2:
        return result
    return result.model_copy(update={"tool_calls": calls[:1], "finish_reason": "tool_calls"})


async def first_call_stream(
    chunks: AsyncIterator[GenerationChunk],
) -> AsyncIterator[GenerationChunk]:
    """``chunks`` up to the first piece of a second tool call, then only the final chunk (its
    text dropped); closing this stream closes ``chunks``."""
    first: int | None = None
    cut = False
    try:
        async for chunk in chunks:
            final = chunk.finish_reason is not None
            if cut:
                if final:
                    yield chunk.model_copy(
                        update={"text": "", "tool_calls": None, "finish_reason": "tool_calls"}
                    )
                continue
            if chunk.tool_calls:
                first = chunk.tool_calls[0].index if first is None else first
                kept = [d for d in chunk.tool_calls if d.index == first]
                if len(kept) < len(chunk.tool_calls):
                    cut = True
                    update: dict[str, object] = {"tool_calls": kept or None}
                    if final:
                        update["finish_reason"] = "tool_calls"
                    chunk = chunk.model_copy(update=update)
                    if not (final or kept or chunk.text):
                        continue
            yield chunk
    finally:
        close = getattr(chunks, "aclose", None)
        if close is not None:
            await close()


def chat_call(req: GenerationRequest) -> Callable[[Engine], Awaitable[GenerationResult]]:
    """What runs ``req`` as a whole answer on an engine (holding it to one call if asked)."""
    if not single_call(req):
        return lambda engine: engine.chat(req)

    async def run(engine: Engine) -> GenerationResult:
        return first_call_only(await engine.chat(req))

    return run


def stream_call(req: GenerationRequest) -> Callable[[Engine], AsyncIterator[GenerationChunk]]:
    """What opens ``req``'s stream on an engine (holding it to one call if asked)."""
    if not single_call(req):
        return lambda engine: engine.stream(req)
    return lambda engine: first_call_stream(engine.stream(req))
