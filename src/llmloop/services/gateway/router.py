"""Routing inside one deployment: weighted (optionally sticky) canary pick, retries with backoff
on retryable errors only, per-attempt timeouts, fallbacks and a circuit breaker per target.

A :class:`DeploymentRuntime` is the live form of a deployment spec: resolved slots over pooled
engines. It is replaced whole on reload (alias swap); requests hold a lease on the engine they
run on, so the old engine finishes its requests before the pool closes it. Streams retry and
fall back only until their first chunk. Tracing, limits and caching are not done here.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from bisect import bisect_right
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from llmloop.core.chat import GenerationChunk
from llmloop.core.deployments import DeploymentSpec, TargetSpec
from llmloop.engines.base import Engine
from llmloop.errors import LlmloopError, OverloadedError, UpstreamError, UpstreamTimeoutError
from llmloop.services.gateway.admission import Admission
from llmloop.services.gateway.breaker import CircuitBreaker
from llmloop.services.gateway.cache import ResponseCache
from llmloop.services.gateway.guarding import GuardPipeline
from llmloop.services.gateway.pool import PooledEngine
from llmloop.services.gateway.targets import ResolvedTarget

T = TypeVar("T")


@dataclass(eq=False)
class Slot:
    """One target of a deployment, resolved and holding its engine."""

    target: TargetSpec
    label: str
    resolved: ResolvedTarget
    pooled: PooledEngine
    breaker: CircuitBreaker

    @property
    def engine(self) -> Engine:
        return self.pooled.engine

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        r = self.resolved
        return (tokens_in * r.price_in_per_1k + tokens_out * r.price_out_per_1k) / 1000.0


def sticky_point(key: str) -> float:
    """A stable point in [0, 1) for a user or key (the same on every process)."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def _as_upstream(exc: BaseException) -> UpstreamError:
    if isinstance(exc, UpstreamError):
        return exc
    if isinstance(exc, TimeoutError):
        return UpstreamTimeoutError("the target did not answer within the deployment's timeout")
    return UpstreamError(f"engine failed: {type(exc).__name__}: {exc}", retryable=False)


class DeploymentRuntime:
    def __init__(
        self,
        spec: DeploymentSpec,
        primaries: list[Slot],
        fallbacks: list[Slot],
        shadow: Slot | None,
        admission: Admission,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        cache: ResponseCache | None = None,
        guards: GuardPipeline | None = None,
    ) -> None:
        self.spec = spec
        self.cache = cache
        self.guards = guards
        self.primaries = primaries
        self.fallbacks = fallbacks
        self.shadow = shadow
        self.admission = admission
        self.sleep = sleep
        total = 0.0
        self._cumulative: list[float] = []
        for slot in primaries:
            total += slot.target.weight
            self._cumulative.append(total)
        self._total = total

    def slots(self) -> list[Slot]:
        return [*self.primaries, *self.fallbacks, *([self.shadow] if self.shadow else [])]

    def pick(self, sticky_key: str | None) -> Slot:
        """The canary target for one request (sticky by user/key when the spec says so)."""
        if len(self.primaries) == 1:
            return self.primaries[0]
        if self.spec.sticky and sticky_key:
            point = sticky_point(sticky_key) * self._total
        else:
            point = random.random() * self._total
        index = min(bisect_right(self._cumulative, point), len(self.primaries) - 1)
        return self.primaries[index]

    def candidates(self, first: Slot) -> list[Slot]:
        return [first, *self.fallbacks]

    def _unavailable(self, last: UpstreamError | None) -> LlmloopError:
        if last is not None:
            return last
        wait = min((s.breaker.retry_after() for s in self.slots()), default=1.0)
        return OverloadedError(
            f"every target of '{self.spec.name}' is failing (circuit open); retry later",
            retry_after=max(1.0, wait),
        )

    async def call(self, first: Slot, fn: Callable[[Engine], Awaitable[T]]) -> tuple[Slot, T, int]:
        """Run ``fn(engine)`` on the first target that answers: (slot, result, attempts)."""
        retry = self.spec.retry
        last: UpstreamError | None = None
        attempts = 0
        for slot in self.candidates(first):
            pooled = slot.pooled
            pooled.enter()
            try:
                for attempt in range(retry.max_retries + 1):
                    if not slot.breaker.allow():
                        break
                    attempts += 1
                    try:
                        async with asyncio.timeout(self.spec.timeout_s):
                            result = await fn(pooled.engine)
                    except (LlmloopError, TimeoutError, Exception) as exc:
                        if isinstance(exc, LlmloopError) and not isinstance(exc, UpstreamError):
                            raise
                        err = _as_upstream(exc)
                        if not err.retryable:
                            raise err from exc
                        slot.breaker.record_failure()
                        last = err
                        if attempt < retry.max_retries:
                            await self.sleep(retry.delay(attempt + 1))
                        continue
                    slot.breaker.record_success()
                    return slot, result, attempts
            finally:
                pooled.leave()
        raise self._unavailable(last)

    async def open_stream(
        self, first: Slot, make: Callable[[Engine], AsyncIterator[GenerationChunk]]
    ) -> tuple[Slot, GenerationChunk, AsyncIterator[GenerationChunk]]:
        """Start a stream; retries and fallbacks apply until its first chunk.

        Returns the slot, the first chunk and the iterator (whose engine lease the caller must
        give back with ``slot.pooled.leave()`` after closing it).
        """
        retry = self.spec.retry
        last: UpstreamError | None = None
        for slot in self.candidates(first):
            for attempt in range(retry.max_retries + 1):
                if not slot.breaker.allow():
                    break
                slot.pooled.enter()
                iterator = make(slot.pooled.engine)
                try:
                    async with asyncio.timeout(self.spec.timeout_s):
                        chunk = await anext(aiter(iterator))
                except BaseException as exc:
                    await _close(iterator)
                    slot.pooled.leave()
                    if isinstance(exc, StopAsyncIteration):
                        exc = UpstreamError("the engine ended the stream without a chunk")
                    if not isinstance(exc, Exception):
                        raise
                    if isinstance(exc, LlmloopError) and not isinstance(exc, UpstreamError):
                        raise
                    err = _as_upstream(exc)
                    if not err.retryable:
                        raise err from exc
                    slot.breaker.record_failure()
                    last = err
                    if attempt < retry.max_retries:
                        await self.sleep(retry.delay(attempt + 1))
                    continue
                slot.breaker.record_success()
                return slot, chunk, iterator
        raise self._unavailable(last)


async def _close(iterator: AsyncIterator[GenerationChunk]) -> None:
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:
            pass
