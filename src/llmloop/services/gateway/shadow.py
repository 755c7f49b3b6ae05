"""Shadow traffic: a copy of a request run on the deployment's shadow target, off the answer's
path. Its answer is traced (kind ``shadow``, parent = the primary's trace, sampled with it) and
counted in metrics, never returned; its failures are recorded, never raised. Deciding whether a
request gets a shadow copy, and spawning it, is the gateway service's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from llmloop.core.chat import GenerationResult
from llmloop.core.traces import TraceRecord, new_trace_id, sampled
from llmloop.engines.base import Engine
from llmloop.services.gateway.metrics import GatewayMetrics
from llmloop.services.gateway.router import DeploymentRuntime, Slot
from llmloop.services.gateway.tracing import TraceWriter
from llmloop.store.registry import utcnow


async def run_shadow(
    runtime: DeploymentRuntime,
    slot: Slot,
    parent: TraceRecord,
    fn: Callable[[Engine], Awaitable[GenerationResult]],
    metrics: GatewayMetrics,
    writer: TraceWriter,
) -> None:
    """Run the shadow copy ``fn`` on ``slot``; trace and count its answer."""
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
        trace.response_text = result.text
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
    metrics.shadow.labels(trace.deployment, trace.status).inc()
    if sampled(parent.id, runtime.spec.trace_sample):
        writer.submit(trace)
