"""A test engine built on the echo engine that records what happens to it.

Options beyond echo's: ``fail_first`` (int: the first N calls raise a retryable UpstreamError),
``fatal`` (bool: every call raises a non-retryable UpstreamError), ``down`` (a key into
:data:`DOWN`: while that flag is set, calls fail retryably), ``text_only`` (bool: no tools, no
token-id prompts), ``every_tool`` (bool: given tools, it calls each of them in turn, as a local
model left to ``tool_choice`` "auto" may, whatever ``parallel_tool_calls`` says; streamed in
pieces, then ``after`` text, then ``finish``). Events are kept per ``spec.model``; the requests
seen are in :data:`SEEN`.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

from llmloop.core.chat import (
    EngineCapabilities,
    GenerationChunk,
    GenerationRequest,
    GenerationResult,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from llmloop.engines.echo import EchoEngine
from llmloop.engines.tool_parsers import new_tool_call_id
from llmloop.errors import UpstreamError

CALLS: dict[str, int] = defaultdict(int)
CANCELLED: dict[str, int] = defaultdict(int)
CLOSED: dict[str, int] = defaultdict(int)
ACTIVE: dict[str, int] = defaultdict(int)
DOWN: dict[str, bool] = {}
SEEN: dict[str, list[GenerationRequest]] = defaultdict(list)


def reset() -> None:
    for d in (CALLS, CANCELLED, CLOSED, ACTIVE, SEEN):
        d.clear()
    DOWN.clear()


class ProbeEngine(EchoEngine):
    kind = "probe"
    config_cls = None  # echo's options and its own (fail_first, text_only, every_tool, ...)

    @property
    def capabilities(self) -> EngineCapabilities:
        caps = super().capabilities
        if self.spec.options.get("text_only"):
            caps = caps.model_copy(update={"tools": False, "token_prompts": False})
        return caps

    def _every_call(self, req: GenerationRequest) -> list[ToolCall]:
        if not (self.spec.options.get("every_tool") and req.wants_tools and req.messages):
            return []
        names = [str((t.get("function") or {}).get("name")) for t in req.tools or []]
        return [ToolCall(id=new_tool_call_id(), name=n, arguments="{}") for n in names]

    def _check(self, req: GenerationRequest) -> None:
        name = self.spec.model
        CALLS[name] += 1
        SEEN[name].append(req)
        opts = self.spec.options
        if opts.get("fatal"):
            raise UpstreamError("probe: fatal", retryable=False)
        if CALLS[name] <= int(str(opts.get("fail_first", 0))):
            raise UpstreamError("probe: transient", retryable=True)
        if DOWN.get(str(opts.get("down", ""))):
            raise UpstreamError("probe: down", retryable=True)

    async def chat(self, req: GenerationRequest) -> GenerationResult:
        self._check(req)
        calls = self._every_call(req)
        if calls:
            finish: Any = self.spec.options.get("finish", "tool_calls")
            text = str(self.spec.options.get("after", ""))
            return GenerationResult(text=text, tool_calls=calls, finish_reason=finish,
                                    usage=Usage(prompt_tokens=1, completion_tokens=9))  # fmt: skip
        ACTIVE[self.spec.model] += 1
        try:
            return await super().chat(req)
        except asyncio.CancelledError:
            CANCELLED[self.spec.model] += 1
            raise
        finally:
            ACTIVE[self.spec.model] -= 1

    async def stream(self, req: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        self._check(req)
        ACTIVE[self.spec.model] += 1
        try:
            async for chunk in self._every_call_stream(req) or super().stream(req):
                yield chunk
        except (asyncio.CancelledError, GeneratorExit):
            CANCELLED[self.spec.model] += 1
            raise
        finally:
            ACTIVE[self.spec.model] -= 1

    def _every_call_stream(self, req: GenerationRequest) -> AsyncIterator[GenerationChunk] | None:
        calls = self._every_call(req)
        if not calls:
            return None

        async def pieces() -> AsyncIterator[GenerationChunk]:
            for i, call in enumerate(calls):
                yield GenerationChunk(
                    tool_calls=[ToolCallDelta(index=i, id=call.id, name=call.name)]
                )
                yield GenerationChunk(tool_calls=[ToolCallDelta(index=i, arguments=call.arguments)])
            after = str(self.spec.options.get("after", ""))
            if after:
                yield GenerationChunk(text=after)
            finish: Any = self.spec.options.get("finish", "tool_calls")
            yield GenerationChunk(
                finish_reason=finish, usage=Usage(prompt_tokens=1, completion_tokens=9)
            )

        return pieces()

    async def aclose(self) -> None:
        CLOSED[self.spec.model] += 1
