"""Routing inside one deployment: weighted (optionally sticky) canary pick, retries with backoff
on retryable errors only (waiting at least what an upstream's ``Retry-After`` asks), per-attempt
timeouts, fallbacks and a circuit breaker per target; an upstream's 429 or 503 reaches the client
as a 429 or 503 with its ``Retry-After``.

A :class:`DeploymentRuntime` is the live form of a deployment spec: resolved slots over pooled
engines. It is replaced whole on reload (alias swap); requests hold a lease on the engine they
run on, so the old engine finishes its requests before the pool closes it. Streams retry and
fall back only until their first chunk. Tracing, limits and caching are not done here.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from llmloop.core.chat import GenerationChunk
from llmloop.core.deployments import DeploymentSpec, TargetSpec
from llmloop.engines.base import Engine
from llmloop.errors import (
    LlmloopError,
    OverloadedError,
    RateLimitError,
    UpstreamError,
    UpstreamTimeoutError,
)
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


def _client_error(err: UpstreamError) -> LlmloopError:
    """What the client gets when every attempt failed: an upstream's 429 or 503 stays a 429 or
    503 (with its ``Retry-After``), so clients back off as they would from the upstream itself;
    anything else is the upstream error (502, or 504 for timeouts)."""
    status = err.extra.get("upstream_status")
    retry_after = err.extra.get("retry_after")
    if status == 429:
        return RateLimitError(err.detail, retry_after=retry_after, upstream_status=status)
    if status == 503:
        return OverloadedError(err.detail, retry_after=retry_after, upstream_status=status)
    return err


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
        self.shadows_in_flight = 0  # shadow copies running now (shadow.py bounds them)
        # A target of weight 0 is drained: never picked, never a last resort.
        self._weighted = [s for s in primaries if s.target.weight > 0] or primaries

    def slots(self) -> list[Slot]:
        return [*self.primaries, *self.fallbacks, *([self.shadow] if self.shadow else [])]

    def pick(self, sticky_key: str | None) -> Slot:
        """The canary target for one request (sticky by user/key when the spec says so).

        Targets whose circuit is open are left out of the split while another is healthy, so a
        canary version that is down does not fail its share of the traffic."""
        pool = self._weighted
        if len(pool) == 1:
            return pool[0]
        if any(s.breaker.state == "open" for s in pool):
            pool = [s for s in pool if s.breaker.state != "open"] or pool
            if len(pool) == 1:
                return pool[0]
        total = sum(s.target.weight for s in pool)
        if self.spec.sticky and sticky_key:
            point = sticky_point(sticky_key) * total
        else:
            point = random.random() * total
        for slot in pool:
            point -= slot.target.weight
            if point < 0:
                return slot
        return pool[-1]

    def candidates(self, first: Slot) -> list[Slot]:
        """Where a request goes, in order: its target, the fallbacks, then the deployment's
        other (weighted) targets as a last resort."""
        others = [s for s in self._weighted if s is not first]
        return [first, *self.fallbacks, *others]

    def _unavailable(self, last: UpstreamError | None) -> LlmloopError:
        if last is not None:
            return _client_error(last)
        tried = [*self.primaries, *self.fallbacks]
        wait = min((s.breaker.retry_after() for s in tried if s.breaker.state != "closed"),
                   default=1.0)  # fmt: skip
        return OverloadedError(
            f"every target of '{self.spec.name}' is failing (circuit open); retry later",
            retry_after=max(1.0, wait),
        )

    def _failed(self, slot: Slot, exc: Exception) -> UpstreamError:
        """Note a failed attempt on ``slot``; errors that no retry can fix are raised."""
        if isinstance(exc, LlmloopError) and not isinstance(exc, UpstreamError):
            slot.breaker.release()  # the caller's mistake says nothing of the target's health
            raise exc
        err = _as_upstream(exc)
        if not err.retryable:
            slot.breaker.release()
            raise err from exc
        slot.breaker.record_failure()
        return err

    def _backoff(self, err: UpstreamError, retries: int) -> float | None:
        """The wait before retrying the same target after ``retries`` retries, or None to move
        on: retries are spent, or the upstream's ``Retry-After`` asks for a longer pause than
        the policy's longest backoff (retrying sooner would only be refused again)."""
        retry = self.spec.retry
        if retries >= retry.max_retries:
            return None
        delay = retry.delay(retries + 1)
        asked = err.extra.get("retry_after")
        if isinstance(asked, int | float):
            if asked > retry.max_backoff_s:
                return None
            delay = max(delay, float(asked))
        return delay

    async def call(self, first: Slot, fn: Callable[[Engine], Awaitable[T]]) -> tuple[Slot, T, int]:
        """Run ``fn(engine)`` on the first target that answers: (slot, result, attempts)."""
        last: UpstreamError | None = None
        attempts = 0
        for slot in self.candidates(first):
            pooled = slot.pooled
            pooled.enter()
            try:
                retries = 0
                while slot.breaker.allow():
                    attempts += 1
                    try:
                        async with asyncio.timeout(self.spec.timeout_s):
                            result = await fn(pooled.engine)
                    except Exception as exc:
                        last = self._failed(slot, exc)
                        wait = self._backoff(last, retries)
                        if wait is None:
                            break
                        await self.sleep(wait)
                        retries += 1
                        continue
                    except BaseException:  # cancelled: the client left mid-attempt
                        slot.breaker.release()
                        raise
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
        last: UpstreamError | None = None
        for slot in self.candidates(first):
            retries = 0
            while slot.breaker.allow():
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
                        slot.breaker.release()
                        raise
                    last = self._failed(slot, exc)
                    wait = self._backoff(last, retries)
                    if wait is None:
                        break
                    await self.sleep(wait)
                    retries += 1
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
