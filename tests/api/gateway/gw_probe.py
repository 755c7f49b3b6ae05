"""A test engine built on the echo engine that records what happens to it.

Options beyond echo's: ``fail_first`` (int: the first N calls raise a retryable UpstreamError),
``fatal`` (bool: every call raises a non-retryable UpstreamError), ``down`` (a key into
:data:`DOWN`: while that flag is set, calls fail retryably), ``text_only`` (bool: no tools, no
token-id prompts). Events are kept per ``spec.model``.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator

from llmloop.core.chat import (
    EngineCapabilities,
    GenerationChunk,
    GenerationRequest,
    GenerationResult,
)
from llmloop.engines.echo import EchoEngine
from llmloop.errors import UpstreamError

CALLS: dict[str, int] = defaultdict(int)
CANCELLED: dict[str, int] = defaultdict(int)
CLOSED: dict[str, int] = defaultdict(int)
ACTIVE: dict[str, int] = defaultdict(int)
DOWN: dict[str, bool] = {}


def reset() -> None:
    for d in (CALLS, CANCELLED, CLOSED, ACTIVE):
        d.clear()
    DOWN.clear()


class ProbeEngine(EchoEngine):
    kind = "probe"

    @property
    def capabilities(self) -> EngineCapabilities:
        caps = super().capabilities
        if self.spec.options.get("text_only"):
            caps = caps.model_copy(update={"tools": False, "token_prompts": False})
        return caps

    def _check(self) -> None:
        name = self.spec.model
        CALLS[name] += 1
        opts = self.spec.options
        if opts.get("fatal"):
            raise UpstreamError("probe: fatal", retryable=False)
        if CALLS[name] <= int(str(opts.get("fail_first", 0))):
            raise UpstreamError("probe: transient", retryable=True)
        if DOWN.get(str(opts.get("down", ""))):
            raise UpstreamError("probe: down", retryable=True)

    async def chat(self, req: GenerationRequest) -> GenerationResult:
        self._check()
        ACTIVE[self.spec.model] += 1
        try:
            return await super().chat(req)
        finally:
            ACTIVE[self.spec.model] -= 1

    async def stream(self, req: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        self._check()
        ACTIVE[self.spec.model] += 1
        try:
            async for chunk in super().stream(req):
                yield chunk
        except (asyncio.CancelledError, GeneratorExit):
            CANCELLED[self.spec.model] += 1
            raise
        finally:
            ACTIVE[self.spec.model] -= 1

    async def aclose(self) -> None:
        CLOSED[self.spec.model] += 1
