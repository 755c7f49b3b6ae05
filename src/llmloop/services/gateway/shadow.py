"""Shadow traffic: a copy of a request run on the deployment's shadow target, off the answer's
path. Its answer is traced (kind ``shadow``, parent = the primary's trace, sampled with it),
scored against the primary's answer once that is complete (``llmloop.shadow.agreement``: token
F1, 0 to 1; ``llmloop.shadow.exact_match``) and counted in metrics, never returned; its failures
are recorded, never raised. At most ``admission.max_in_flight`` copies of a deployment run at
once: beyond that a copy is skipped (metrics status ``skipped``), so a slow shadow cannot pile
up work behind the primary. Deciding whether a request gets a shadow copy, and spawning it, is
the gateway service's.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable

from llmloop.core.chat import GenerationResult
from llmloop.core.traces import TraceRecord, new_trace_id, sampled
from llmloop.engines.base import Engine
from llmloop.services.gateway.metrics import GatewayMetrics
from llmloop.services.gateway.router import DeploymentRuntime, Slot
from llmloop.services.gateway.tracing import TraceWriter
from llmloop.store.registry import utcnow

PRIMARY_POLL_S = 0.05  # how often a finished shadow looks whether its primary has finished too


def agreement(primary: str, shadow: str) -> float:
    """Token F1 of two answers (lower-cased, split on whitespace): 1.0 for the same words."""
    a, b = Counter(primary.lower().split()), Counter(shadow.lower().split())
    if not a or not b:
        return float(a == b)
    common = sum((a & b).values())
    if common == 0:
        return 0.0
    precision, recall = common / sum(b.values()), common / sum(a.values())
    return 2 * precision * recall / (precision + recall)


async def _primary_done(parent: TraceRecord, limit_s: float) -> bool:
    """Wait (at most ``limit_s``) for the primary's trace to be finished (a stream may still be
    running); whether it finished."""
    deadline = time.monotonic() + limit_s
    while parent.latency_ms == 0.0:
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(PRIMARY_POLL_S)
    return True


async def _score(trace: TraceRecord, parent: TraceRecord, limit_s: float) -> None:
    if not await _primary_done(parent, limit_s) or parent.status != "ok":
        return
    trace.extra["llmloop.shadow.agreement"] = round(
        agreement(parent.response_text, trace.response_text), 4
    )
    trace.extra["llmloop.shadow.exact_match"] = (
        parent.response_text.strip() == trace.response_text.strip()
    )


async def run_shadow(
    runtime: DeploymentRuntime,
    slot: Slot,
    parent: TraceRecord,
    fn: Callable[[Engine], Awaitable[GenerationResult]],
    metrics: GatewayMetrics,
    writer: TraceWriter,
) -> None:
    """Run the shadow copy ``fn`` on ``slot``; trace, score and count its answer."""
    if runtime.shadows_in_flight >= runtime.spec.admission.max_in_flight:
        metrics.shadow.labels(parent.deployment, "skipped").inc()
        return
    runtime.shadows_in_flight += 1
    try:
        await _run(runtime, slot, parent, fn, metrics, writer)
    finally:
        runtime.shadows_in_flight -= 1


async def _run(
    runtime: DeploymentRuntime,
    slot: Slot,
    parent: TraceRecord,
    fn: Callable[[Engine], Awaitable[GenerationResult]],
    metrics: GatewayMetrics,
    writer: TraceWriter,
) -> None:
    trace = TraceRecord(id=new_trace_id(), at=utcnow(), operation=parent.operation,
                        deployment=parent.deployment, request_model=parent.request_model,
                        response_model=runtime.spec.name, kind="shadow", parent_id=parent.id,
                        key_id=parent.key_id, user=parent.user, target=slot.label,
                        model_version_id=slot.resolved.version_id,
                        request_text=parent.request_text)  # fmt: skip
    started = time.perf_counter()
    slot.pooled.enter()
    try:
        async with asyncio.timeout(runtime.spec.timeout_s):
            result = await fn(slot.engine)
        trace.response_text = result.text if runtime.spec.log_text else ""  # as the primary
        trace.input_tokens = result.usage.prompt_tokens
        trace.output_tokens = result.usage.completion_tokens
        trace.finish_reason = result.finish_reason
        trace.cost = slot.cost(trace.input_tokens, trace.output_tokens)
    except Exception as exc:
        trace.status, trace.http_status = "error", getattr(exc, "status", 500)
        trace.error = str(exc) or type(exc).__name__
    finally:
        slot.pooled.leave()
    trace.latency_ms = (time.perf_counter() - started) * 1000.0
    if trace.status == "ok" and runtime.spec.log_text:
        await _score(trace, parent, runtime.spec.timeout_s)
    metrics.shadow.labels(trace.deployment, trace.status).inc()
    if sampled(parent.id, runtime.spec.trace_sample):
        writer.submit(trace)
