"""The router of one deployment on its own: picking around open circuits, the last-resort
targets, probes given back, ``Retry-After`` honoured, and what the client gets in the end."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable

import pytest

from llmloop.core.chat import EngineSpec
from llmloop.core.deployments import BreakerPolicy, DeploymentSpec, TargetSpec
from llmloop.engines.base import Engine
from llmloop.engines.echo import EchoEngine
from llmloop.errors import (
    BadRequestError,
    OverloadedError,
    RateLimitError,
    UpstreamError,
)
from llmloop.services.gateway.admission import Admission
from llmloop.services.gateway.breaker import CircuitBreaker
from llmloop.services.gateway.pool import PooledEngine
from llmloop.services.gateway.router import DeploymentRuntime, Slot
from llmloop.services.gateway.targets import ResolvedTarget

Fn = Callable[[Engine], Awaitable[str]]


def _slot(name: str, weight: float = 1.0, threshold: int = 1) -> Slot:
    spec = EngineSpec(kind="echo", model=name)
    target = TargetSpec(engine=spec, weight=weight, name=name)
    resolved = ResolvedTarget(key=name, engine=spec, version_id=None, price_in_per_1k=0.0,
                              price_out_per_1k=0.0)  # fmt: skip
    breaker = CircuitBreaker(BreakerPolicy(failure_threshold=threshold, cooldown_s=60))
    return Slot(target, name, resolved, PooledEngine(name, EchoEngine(spec)), breaker)


def _runtime(
    primaries: list[Slot],
    fallbacks: list[Slot] = (),
    retry: dict[str, float] | None = None,  # type: ignore[assignment]
) -> tuple[DeploymentRuntime, list[float]]:
    spec = DeploymentSpec.model_validate({
        "name": "d", "retry": retry or {},
        "targets": [s.target.model_dump() for s in primaries],
        "fallbacks": [s.target.model_dump() for s in fallbacks]})  # fmt: skip
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    runtime = DeploymentRuntime(spec, primaries, list(fallbacks), None,
                                Admission("d", spec.admission), sleep=sleep)  # fmt: skip
    return runtime, slept


def _answer(failures: dict[str, list[Exception]]) -> Fn:
    """Answers with the engine's model name, after raising that name's queued errors."""

    async def fn(engine: Engine) -> str:
        queued = failures.get(engine.spec.model) or []
        if queued:
            raise queued.pop(0)
        return engine.spec.model

    return fn


def _retryable(**extra: object) -> UpstreamError:
    return UpstreamError("down", retryable=True, **extra)


def test_an_open_target_leaves_the_split_while_another_is_healthy() -> None:
    a, b = _slot("a"), _slot("b")
    runtime, _ = _runtime([a, b])
    a.breaker.record_failure()  # threshold 1: open
    assert Counter(runtime.pick(None).label for _ in range(200)) == {"b": 200}
    b.breaker.record_failure()  # both open: the split is as declared again
    assert set(Counter(runtime.pick(None).label for _ in range(200))) == {"a", "b"}


def test_a_drained_target_is_never_picked_nor_a_last_resort() -> None:
    a, b = _slot("a", weight=1), _slot("b", weight=0)
    runtime, _ = _runtime([a, b])
    a.breaker.record_failure()
    assert {runtime.pick(None).label for _ in range(50)} == {"a"}
    assert [s.label for s in runtime.candidates(a)] == ["a"]


async def test_the_other_targets_are_the_last_resort_after_the_fallbacks() -> None:
    a, b, f = _slot("a"), _slot("b"), _slot("f")
    runtime, _ = _runtime([a, b], [f])
    assert [s.label for s in runtime.candidates(a)] == ["a", "f", "b"]
    fn = _answer({"a": [_retryable()], "f": [_retryable()]})
    slot, answer, attempts = await runtime.call(a, fn)
    assert (slot.label, answer, attempts) == ("b", "b", 3)


@pytest.mark.parametrize("error", [BadRequestError("bad"), UpstreamError("fatal")])
async def test_a_probe_that_proves_nothing_is_given_back(error: Exception) -> None:
    a = _slot("a")
    runtime, _ = _runtime([a])
    a.breaker.record_failure()
    a.breaker.opened_at = -1000.0  # long ago: half-open
    with pytest.raises(type(error)):
        await runtime.call(a, _answer({"a": [error]}))
    assert a.breaker.state == "half_open" and a.breaker.allow()  # the next request probes


async def test_a_probe_whose_client_left_is_given_back() -> None:
    a = _slot("a")
    runtime, _ = _runtime([a])
    a.breaker.record_failure()
    a.breaker.opened_at = -1000.0

    async def hang(engine: Engine) -> str:
        await asyncio.sleep(60)
        return ""

    task = asyncio.ensure_future(runtime.call(a, hang))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert a.breaker.allow()
    a.breaker.release()

    async def make(engine: Engine):  # type: ignore[no-untyped-def]
        await asyncio.sleep(60)
        yield None

    task = asyncio.ensure_future(runtime.open_stream(a, make))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert a.breaker.allow()


async def test_retry_after_is_waited_when_the_backoff_allows_it() -> None:
    a = _slot("a", threshold=10)
    runtime, slept = _runtime([a], retry={"max_retries": 2, "backoff_s": 0.01})
    fn = _answer({"a": [_retryable(retry_after=0.5, upstream_status=429)]})
    assert (await runtime.call(a, fn))[1] == "a"
    assert slept == [0.5]


async def test_a_longer_retry_after_moves_on_and_reaches_the_client() -> None:
    a, f = _slot("a", threshold=10), _slot("f")
    runtime, slept = _runtime([a], [f], retry={"max_retries": 3, "max_backoff_s": 2})
    fn = _answer({"a": [_retryable(retry_after=7, upstream_status=429)]})
    assert (await runtime.call(a, fn))[1] == "f"  # no retry on 'a' sooner than it asked
    assert slept == []
    alone, slept = _runtime([_slot("b", threshold=10)], retry={"max_retries": 3})
    fn = _answer({"b": [_retryable(retry_after=7, upstream_status=429)]})
    with pytest.raises(RateLimitError) as info:
        await alone.call(alone.primaries[0], fn)
    assert info.value.status == 429 and info.value.retry_after == 7
    fn = _answer({"b": [_retryable(retry_after=9, upstream_status=503)]})
    with pytest.raises(OverloadedError) as over:
        await alone.call(alone.primaries[0], fn)
    assert over.value.status == 503 and over.value.retry_after == 9


async def test_other_upstream_failures_stay_502() -> None:
    runtime, _ = _runtime([_slot("a", threshold=10)])
    fn = _answer({"a": [_retryable(upstream_status=500)]})
    with pytest.raises(UpstreamError) as info:
        await runtime.call(runtime.primaries[0], fn)
    assert info.value.status == 502
