"""The gateway request pipeline: admission -> limits -> cache -> input guards -> engine (through
output guards) -> settle -> shadow copy -> trace and metrics.

Routes call :class:`GatewayService` with parsed :class:`GenerationRequest` values and an Actor;
it answers with generation values and fills the :class:`TraceRecord` the route created (so the
trace id can go out in headers before a stream starts). Limits (``policy``) are one backend per
process; the response cache (``cache``) and guardrails (``guarding``) are per deployment, on its
runtime.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import orjson

from llmloop.core.chat import (
    EmbeddingResult,
    GenerationChunk,
    GenerationRequest,
    GenerationResult,
    ToolCall,
    ToolCallDelta,
    collect_tool_calls,
)
from llmloop.core.guards import GuardVerdict
from llmloop.core.traces import TraceRecord, new_trace_id, sampled
from llmloop.engines.base import Engine
from llmloop.errors import BadRequestError, LlmloopError
from llmloop.services.actors import Actor
from llmloop.services.gateway.guarding import verdict_dicts
from llmloop.services.gateway.manager import DeploymentManager
from llmloop.services.gateway.metrics import GatewayMetrics
from llmloop.services.gateway.policy import LimitBackend, Reservation
from llmloop.services.gateway.router import DeploymentRuntime, Slot
from llmloop.services.gateway.trace_query import TraceQuery
from llmloop.services.gateway.tracing import TraceWriter
from llmloop.store.registry import utcnow

log = logging.getLogger("llmloop.gateway")
T = TypeVar("T")


def request_text(req: GenerationRequest) -> str:
    if req.prompt_ids is not None:
        return " ".join(map(str, req.prompt_ids))
    if req.prompt is not None:
        return req.prompt
    assert req.messages is not None
    return "\n".join(f"{m.role}: {m.content}" for m in req.messages)


def estimate_tokens(req: GenerationRequest) -> int:
    """A cheap upper-ish estimate for limits: ~4 characters a token plus the output cap."""
    chars = len(request_text(req))
    if req.tools:
        chars += len(orjson.dumps(req.tools))
    return chars // 4 + 1 + req.sampling.max_tokens


def require_capable(engine: Engine, req: GenerationRequest, deployment: str) -> None:
    """Refuse (400) tools, a JSON response format, token-id prompts or media parts that the
    target's engine cannot honour."""
    media = req.messages is not None and any(m.parts for m in req.messages)
    if not (req.wants_tools or media) and req.response_format is None and req.prompt_ids is None:
        return
    caps = engine.capabilities
    if media and not caps.multimodal:
        raise BadRequestError(f"model '{deployment}' ({engine.kind} engine) takes text only: "
                              "no image, audio or file parts", param="messages")  # fmt: skip
    if req.prompt_ids is not None and not caps.token_prompts:
        raise BadRequestError(f"model '{deployment}' ({engine.kind} engine) takes prompts as "
                              "text, not token ids", param="prompt")  # fmt: skip
    if req.wants_tools and not caps.tools:
        raise BadRequestError(f"model '{deployment}' ({engine.kind} engine) does not support "
                              "tools", param="tools")  # fmt: skip
    if req.response_format is not None and not caps.structured_output:
        raise BadRequestError(f"model '{deployment}' ({engine.kind} engine) does not support "
                              "response_format " + repr(req.response_format.get("type")),
                              param="response_format")  # fmt: skip


def note_tool_calls(trace: TraceRecord, calls: list[ToolCall], keep_text: bool) -> None:
    """The calls on the trace: names always, arguments only where the deployment logs text."""
    trace.extra["llmloop.tool_calls"] = (
        [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in calls]
        if keep_text else [c.name for c in calls]
    )  # fmt: skip


class GatewayService:
    def __init__(
        self,
        manager: DeploymentManager,
        writer: TraceWriter,
        metrics: GatewayMetrics,
        limits: LimitBackend | None = None,
        device_hour_price: float = 0.0,
        traces: TraceQuery | None = None,
    ) -> None:
        self.manager = manager
        self.traces = traces if traces is not None else TraceQuery(writer.store)
        self.writer = writer
        self.metrics = metrics
        self.limits = limits
        self.device_hour_price = device_hour_price
        self._background: set[asyncio.Task[Any]] = set()

    # -- shared steps -------------------------------------------------------------------------

    def new_trace(
        self, operation: str, model: str, actor: Actor, stream: bool = False
    ) -> TraceRecord:
        return TraceRecord(id=new_trace_id(), at=utcnow(), operation=operation,
                           deployment=model, request_model=model, key_id=actor.key_id,
                           stream=stream)  # fmt: skip

    async def _admit(
        self, actor: Actor, runtime: DeploymentRuntime, est_tokens: int
    ) -> Reservation | None:
        await runtime.admission.acquire()
        if self.limits is None:
            return None
        try:
            est_cost = runtime.primaries[0].cost(est_tokens, 0)
            return await self.limits.reserve(actor, runtime.spec.name, est_tokens, est_cost)
        except BaseException:
            runtime.admission.release()
            raise

    async def _finish(
        self,
        runtime: DeploymentRuntime,
        reservation: Reservation | None,
        trace: TraceRecord,
        started: float,
        error: BaseException | None,
    ) -> None:
        runtime.admission.release()
        trace.latency_ms = (time.perf_counter() - started) * 1000.0
        if error is not None:
            trace.status = "cancelled" if isinstance(error, asyncio.CancelledError) else "error"
            trace.http_status = error.status if isinstance(error, LlmloopError) else (
                499 if trace.status == "cancelled" else 500)  # fmt: skip
            trace.error = str(error) or type(error).__name__
        if reservation is not None and self.limits is not None:
            # Off the answer's path: accounting runs in the background (drained on shutdown).
            self._spawn(self._settle(reservation, trace, error is None or trace.output_tokens > 0))
        self.record(trace, runtime.spec.trace_sample)

    async def _settle(self, reservation: Reservation, trace: TraceRecord, used: bool) -> None:
        assert self.limits is not None
        try:
            if used:
                tokens = trace.input_tokens + trace.output_tokens
                await self.limits.settle(reservation, tokens, trace.cost)
            else:
                await self.limits.release(reservation)
        except Exception:
            log.exception("settling reservation %s failed", reservation.id)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def record(self, trace: TraceRecord, sample: float = 1.0) -> None:
        """Count the trace in metrics and queue it for the writer (if it is sampled)."""
        m = self.metrics
        dep, op = trace.deployment, trace.operation
        m.requests.labels(dep, op, trace.status).inc()
        m.latency.labels(dep, op).observe(trace.latency_ms / 1000.0)
        if trace.ttft_ms is not None:
            m.ttft.labels(dep).observe(trace.ttft_ms / 1000.0)
        if trace.input_tokens:
            m.tokens.labels(dep, "input").inc(trace.input_tokens)
        if trace.output_tokens:
            m.tokens.labels(dep, "output").inc(trace.output_tokens)
        if trace.cache_hit:
            m.cache_hits.labels(dep).inc()
        if sampled(trace.id, sample):
            self.writer.submit(trace)

    def _fill(self, trace: TraceRecord, slot: Slot, runtime: DeploymentRuntime) -> None:
        trace.target = slot.label
        trace.model_version_id = slot.resolved.version_id
        trace.response_model = runtime.spec.name

    def _cost(self, slot: Slot, tokens_in: int, tokens_out: int, seconds: float) -> float:
        cost = slot.cost(tokens_in, tokens_out)
        if cost == 0.0 and self.device_hour_price and slot.resolved.version_id is not None:
            cost = self.device_hour_price * seconds / 3600.0
        return cost

    # -- chat and completions -----------------------------------------------------------------

    async def generate(
        self, actor: Actor, req: GenerationRequest, trace: TraceRecord
    ) -> GenerationResult:
        """A whole answer for a chat or completion request on deployment ``req.model``."""
        started = time.perf_counter()
        runtime = await self.manager.get(req.model)
        reservation = await self._admit(actor, runtime, estimate_tokens(req))
        error: BaseException | None = None
        try:
            result = await self._generate(runtime, actor, req, trace)
            return result
        except BaseException as exc:
            error = exc
            raise
        finally:
            await self._finish(runtime, reservation, trace, started, error)

    async def _generate(
        self, runtime: DeploymentRuntime, actor: Actor, req: GenerationRequest, trace: TraceRecord
    ) -> GenerationResult:
        trace.user = req.user
        keep_text = runtime.spec.log_text
        if keep_text:
            trace.request_text = request_text(req)
        slot = runtime.pick(req.user or actor.key_id)
        self._fill(trace, slot, runtime)
        require_capable(slot.engine, req, runtime.spec.name)
        guards, cache = runtime.guards, runtime.cache
        if guards is not None:
            req, verdicts = guards.check_request(req)
            trace.guard_verdicts = verdict_dicts(verdicts)
        hit = await cache.lookup(slot.resolved.key, req) if cache is not None else None
        trace.cache_hit = hit is not None
        t0 = time.perf_counter()
        if hit is not None:
            result = hit.result
        else:
            slot, result, attempts = await runtime.call(slot, lambda e: e.chat(req))
            if attempts > 1:
                self.metrics.retries.labels(runtime.spec.name).inc(attempts - 1)
            self._fill(trace, slot, runtime)
            if cache is not None:
                await cache.store(slot.resolved.key, req, result)
            self._shadow(runtime, trace, lambda e: e.chat(req))
        if guards is not None:
            out = guards.check_output(result.text)
            trace.guard_verdicts = [*(trace.guard_verdicts or []), *verdict_dicts(out.verdicts)]
            if out.text != result.text:
                result = result.model_copy(update={"text": out.text})
            if result.tool_calls:
                calls, verdicts = guards.check_tool_calls(result.tool_calls)
                trace.guard_verdicts = [*(trace.guard_verdicts or []), *verdict_dicts(verdicts)]
                if calls != result.tool_calls:
                    result = result.model_copy(update={"tool_calls": calls})
        if result.tool_calls:
            note_tool_calls(trace, result.tool_calls, keep_text)
        usage = result.usage
        trace.input_tokens, trace.output_tokens = usage.prompt_tokens, usage.completion_tokens
        trace.finish_reason = result.finish_reason
        if not trace.cache_hit:
            trace.cost = self._cost(slot, usage.prompt_tokens, usage.completion_tokens,
                                    time.perf_counter() - t0)  # fmt: skip
        if keep_text:
            trace.response_text = result.text
        return result

    async def stream(
        self, actor: Actor, req: GenerationRequest, trace: TraceRecord
    ) -> AsyncIterator[GenerationChunk]:
        """Open a stream: errors before the first chunk raise here (so they get a status code);
        the returned iterator yields every chunk and must be closed (a disconnect closes it)."""
        started = time.perf_counter()
        runtime = await self.manager.get(req.model)
        reservation = await self._admit(actor, runtime, estimate_tokens(req))
        try:
            trace.user = req.user
            if runtime.spec.log_text:
                trace.request_text = request_text(req)
            slot = runtime.pick(req.user or actor.key_id)
            self._fill(trace, slot, runtime)
            require_capable(slot.engine, req, runtime.spec.name)
            if runtime.guards is not None:
                req, verdicts = runtime.guards.check_request(req)
                trace.guard_verdicts = verdict_dicts(verdicts)
            slot, first, iterator = await runtime.open_stream(slot, lambda e: e.stream(req))
        except BaseException as exc:
            await self._finish(runtime, reservation, trace, started, exc)
            raise
        trace.ttft_ms = (time.perf_counter() - started) * 1000.0
        self._fill(trace, slot, runtime)
        self._shadow(runtime, trace, lambda e: e.chat(req))
        if runtime.guards is None:
            return self._relay(runtime, reservation, trace, started, slot, first, iterator)
        live: list[GuardVerdict] = []
        chunks = self._relay(runtime, reservation, trace, started, slot, first, iterator, live)
        return runtime.guards.stream(chunks, live)

    async def _relay(
        self,
        runtime: DeploymentRuntime,
        reservation: Reservation | None,
        trace: TraceRecord,
        started: float,
        slot: Slot,
        first: GenerationChunk,
        iterator: AsyncIterator[GenerationChunk],
        output_verdicts: list[GuardVerdict] | None = None,
    ) -> AsyncIterator[GenerationChunk]:
        keep_text = runtime.spec.log_text
        parts: list[str] = []
        calls: list[ToolCallDelta] = []
        error: BaseException | None = None
        try:
            chunk: GenerationChunk | None = first
            while chunk is not None:
                if keep_text and chunk.text:
                    parts.append(chunk.text)
                if chunk.tool_calls:
                    calls += chunk.tool_calls
                if chunk.usage is not None:
                    trace.input_tokens = chunk.usage.prompt_tokens
                    trace.output_tokens = chunk.usage.completion_tokens
                if chunk.finish_reason is not None:
                    trace.finish_reason = chunk.finish_reason
                yield chunk
                chunk = await anext(iterator, None)
        except BaseException as exc:
            error = exc
            raise
        finally:
            aclose = getattr(iterator, "aclose", None)
            try:
                if aclose is not None:
                    await aclose()  # a disconnect lands here: the engine sees the cancel
            finally:
                slot.pooled.leave()
                if output_verdicts:
                    trace.guard_verdicts = [*(trace.guard_verdicts or []),
                                            *verdict_dicts(output_verdicts)]  # fmt: skip
                trace.response_text = "".join(parts)
                if calls:
                    note_tool_calls(trace, collect_tool_calls(calls), keep_text)
                trace.cost = self._cost(slot, trace.input_tokens, trace.output_tokens,
                                        time.perf_counter() - started)  # fmt: skip
                await self._finish(runtime, reservation, trace, started, error)

    # -- shadow traffic -----------------------------------------------------------------------

    def _shadow(
        self,
        runtime: DeploymentRuntime,
        parent: TraceRecord,
        fn: Callable[[Engine], Awaitable[GenerationResult]],
    ) -> None:
        slot = runtime.shadow
        if slot is None:
            return
        self._spawn(self._run_shadow(runtime, slot, parent, fn))

    async def _run_shadow(
        self,
        runtime: DeploymentRuntime,
        slot: Slot,
        parent: TraceRecord,
        fn: Callable[[Engine], Awaitable[GenerationResult]],
    ) -> None:
        """Run the shadow copy; its answer is traced (kind 'shadow', parent = the primary)."""
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
        self.metrics.shadow.labels(trace.deployment, trace.status).inc()
        if sampled(parent.id, runtime.spec.trace_sample):
            self.writer.submit(trace)

    # -- embeddings and models ----------------------------------------------------------------

    async def embed(
        self, actor: Actor, model: str, texts: list[str], trace: TraceRecord
    ) -> EmbeddingResult:
        started = time.perf_counter()
        runtime = await self.manager.get(model)
        est = sum(len(t) for t in texts) // 4 + 1
        reservation = await self._admit(actor, runtime, est)
        error: BaseException | None = None
        try:
            slot = runtime.pick(actor.key_id)
            self._fill(trace, slot, runtime)
            slot, result, _ = await runtime.call(slot, lambda e: e.embed(texts))
            self._fill(trace, slot, runtime)
            trace.input_tokens = result.usage.prompt_tokens
            trace.cost = self._cost(slot, trace.input_tokens, 0, time.perf_counter() - started)
            return result
        except BaseException as exc:
            error = exc
            raise
        finally:
            await self._finish(runtime, reservation, trace, started, error)

    async def list_models(self) -> list[tuple[str, int]]:
        """Public model names (deployments) and their creation time (epoch seconds)."""
        await self.manager.start()
        deps = await asyncio.to_thread(self.manager.deployments.list)
        return [(d.name, int(time.time())) for d in deps]

    async def drain_background(self, timeout_s: float = 10.0) -> None:
        """Wait for shadow copies still running (on shutdown)."""
        if self._background:
            await asyncio.wait(set(self._background), timeout=timeout_s)

    async def aclose(self) -> None:
        await self.drain_background()
        await self.manager.aclose()
        await self.writer.aclose()
        if self.limits is not None:
            await self.limits.aclose()
