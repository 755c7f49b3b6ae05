"""Several answers to one request (OpenAI's ``n``): fanned out to the engine, gathered, merged.

The engine contract answers one request with one answer, so ``n`` choices are ``n`` engine
requests run at once (a batching engine such as hf decodes them together). Each goes through the
deployment's routing on its own (retries, fallbacks), and through the output guards on its own;
the request as a whole is admitted, reserved against limits, settled and traced once by the
gateway service. With a ``seed``, choice ``j`` samples with ``seed + j`` (choice 0 is the n=1
answer), so seeded choices differ as OpenAI's do; greedy choices may all be the same.

On the trace, as in the answer's usage, the prompt counts once and the completion tokens of all
choices add up; the first choice gives the finish reason and response text, and every choice's
reason (``gen_ai.response.finish_reasons``), the count (``gen_ai.request.choice.count``) and,
where the deployment logs text, every choice's text (``llmloop.choices``) go in its attributes;
the calls of every choice are noted. The cost counts the prompt once per choice (each engine
request reads it).
Answers of ``n > 1`` are never cached: a stored answer is one choice, not ``n``. This module knows
nothing of HTTP or of how chunks are rendered.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable
from typing import TypeVar

from llmloop.core.chat import (
    GenerationChunk,
    GenerationRequest,
    GenerationResult,
    ToolCall,
    ToolCallDelta,
    Usage,
    collect_tool_calls,
)
from llmloop.core.guards import GuardVerdict
from llmloop.core.traces import TraceRecord
from llmloop.services.gateway.guarding import GuardPipeline, verdict_dicts
from llmloop.services.gateway.router import DeploymentRuntime, Slot
from llmloop.services.gateway.single_call import chat_call, stream_call

T = TypeVar("T")
Opened = tuple[Slot, GenerationChunk, AsyncIterator[GenerationChunk]]


def note_tool_calls(trace: TraceRecord, calls: list[ToolCall], keep_text: bool) -> None:
    """The calls on the trace: names always, arguments only where the deployment logs text."""
    trace.extra["llmloop.tool_calls"] = (
        [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in calls]
        if keep_text else [c.name for c in calls]
    )  # fmt: skip


def note_choices(trace: TraceRecord, results: list[GenerationResult], keep_text: bool) -> None:
    """The answers on the trace (see the module docstring); one answer is noted plainly."""
    first = results[0]
    calls = [c for r in results for c in r.tool_calls or ()]
    if calls:
        note_tool_calls(trace, calls, keep_text)
    trace.input_tokens = max(r.usage.prompt_tokens for r in results)  # a cancelled one has none
    trace.output_tokens = sum(r.usage.completion_tokens for r in results)
    trace.finish_reason = first.finish_reason
    if keep_text:
        trace.response_text = first.text
    if len(results) > 1:
        trace.extra["gen_ai.request.choice.count"] = len(results)
        trace.extra["gen_ai.response.finish_reasons"] = [r.finish_reason for r in results]
        if keep_text:
            trace.extra["llmloop.choices"] = [r.text for r in results]


def _int64(value: int) -> int:
    """``value`` wrapped into the int64 range that seeds live in."""
    return (value + 2**63) % 2**64 - 2**63


def choice_requests(req: GenerationRequest, n: int) -> list[GenerationRequest]:
    """``req`` once per choice, choice ``j`` seeded with ``seed + j`` when there is a seed."""
    seed = req.sampling.seed
    if n == 1 or seed is None:
        return [req] * n
    return [req] + [
        req.model_copy(
            update={"sampling": req.sampling.model_copy(update={"seed": _int64(seed + j)})}
        )
        for j in range(1, n)
    ]


async def gather_all(aws: list[Awaitable[T]]) -> list[T]:
    """Every result, in order; the first error cancels the rest and is raised."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def call_choices(
    runtime: DeploymentRuntime, first: Slot, reqs: list[GenerationRequest]
) -> tuple[Slot, list[GenerationResult], int]:
    """A whole answer per request: (the first choice's slot, the answers, attempts in all)."""
    if len(reqs) == 1:
        slot, result, attempts = await runtime.call(first, chat_call(reqs[0]))
        return slot, [result], attempts
    outs = await gather_all([runtime.call(first, chat_call(r)) for r in reqs])
    return outs[0][0], [out[1] for out in outs], sum(out[2] for out in outs)


async def open_choices(
    runtime: DeploymentRuntime, first: Slot, reqs: list[GenerationRequest]
) -> list[Opened]:
    """A started stream per request (retries and fallbacks as for one); if any cannot start,
    the others are closed and their engines given back before the error is raised."""
    tasks = [asyncio.ensure_future(runtime.open_stream(first, stream_call(r))) for r in reqs]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        for out in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(out, tuple):
                await _close(out[2])
                out[0].pooled.leave()
        raise


async def _close(stream: AsyncIterator[GenerationChunk]) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()


async def _next(stream: AsyncIterator[GenerationChunk]) -> GenerationChunk | None:
    return await anext(stream, None)


async def _chain(
    first: GenerationChunk, rest: AsyncIterator[GenerationChunk]
) -> AsyncIterator[GenerationChunk]:
    try:
        yield first
        async for chunk in rest:
            yield chunk
    finally:
        await _close(rest)


class ChoiceStreams:
    """Started choice streams merged into one of ``(index, chunk)``, each through the output
    guards on its own; chunks come as they are made, and each choice's text, calls, usage and
    finish reason are kept for the trace. :meth:`aclose` stops them all and gives back their
    engines (once)."""

    def __init__(
        self, opened: list[Opened], guards: GuardPipeline | None, prompt_estimate: int = 0
    ) -> None:
        self.slot = opened[0][0]
        self.prompt_estimate = prompt_estimate
        self.verdicts: list[GuardVerdict] = []
        self._slots = [slot for slot, _, _ in opened]
        chained = [_chain(first, rest) for _, first, rest in opened]
        self._streams = (
            chained if guards is None else [guards.stream(c, self.verdicts) for c in chained]
        )
        self._texts: list[list[str]] = [[] for _ in opened]
        self._calls: list[list[ToolCallDelta]] = [[] for _ in opened]
        self._ends: list[GenerationChunk | None] = [None for _ in opened]
        self._pieces = [0 for _ in opened]  # chunks with text or call pieces: ~tokens
        self._reads: dict[int, asyncio.Future[GenerationChunk | None]] = {}
        self._closed = False

    def _read(self, index: int) -> None:
        self._reads[index] = asyncio.ensure_future(_next(self._streams[index]))

    async def chunks(self) -> AsyncGenerator[tuple[int, GenerationChunk], None]:
        """Every choice's chunks as they come (in index order when several are ready)."""
        for index in range(len(self._streams)):
            self._read(index)
        while self._reads:
            done, _ = await asyncio.wait(self._reads.values(), return_when=asyncio.FIRST_COMPLETED)
            for index in sorted(i for i, read in self._reads.items() if read in done):
                chunk = self._reads.pop(index).result()  # a choice's error ends the stream
                if chunk is None:
                    continue
                self._keep(index, chunk)
                self._read(index)
                yield index, chunk

    def _keep(self, index: int, chunk: GenerationChunk) -> None:
        if chunk.text:
            self._texts[index].append(chunk.text)
        if chunk.tool_calls:
            self._calls[index] += chunk.tool_calls
        if chunk.text or chunk.tool_calls:
            self._pieces[index] += 1
        if chunk.finish_reason is not None:
            self._ends[index] = chunk

    @property
    def n(self) -> int:
        return len(self._streams)

    def note(self, trace: TraceRecord, keep_text: bool) -> None:
        """The choices (as far as they went) and the output guards' verdicts on the trace."""
        if self.verdicts:
            trace.guard_verdicts = [*(trace.guard_verdicts or []), *verdict_dicts(self.verdicts)]
        note_choices(trace, self.results(), keep_text)

    def results(self) -> list[GenerationResult]:
        """Each choice as far as it went (an unfinished one: 'cancelled', its usage estimated:
        the prompt's estimate and a token per chunk streamed)."""
        out = []
        ends = zip(self._texts, self._calls, self._ends, self._pieces, strict=True)
        for texts, calls, end, pieces in ends:
            if end is None:
                end = GenerationChunk(finish_reason="cancelled")
            usage = end.usage or Usage(prompt_tokens=self.prompt_estimate, completion_tokens=pieces)
            out.append(GenerationResult(
                text="".join(texts), tool_calls=collect_tool_calls(calls) or None,
                finish_reason=end.finish_reason or "cancelled", usage=usage,
            ))  # fmt: skip
        return out

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        reads = list(self._reads.values())
        for read in reads:
            read.cancel()
        await asyncio.gather(*reads, return_exceptions=True)
        try:
            for stream in self._streams:
                await _close(stream)  # a choice still generating is cancelled in its engine
        finally:
            for slot in self._slots:
                slot.pooled.leave()
