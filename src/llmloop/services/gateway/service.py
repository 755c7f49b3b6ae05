"""The gateway request pipeline: admission -> limits -> cache -> input guards -> engine (through
output guards) -> settle -> shadow copy -> trace and metrics.

Routes call :class:`GatewayService` with parsed :class:`GenerationRequest` values and an Actor;
it answers with generation values and fills the :class:`TraceRecord` the route created (so the
trace id can go out in headers before a stream starts). Limits (``policy``) are one backend per
process; the response cache (``cache``) and guardrails (``guarding``) are per deployment, on its
runtime. Several answers to one request (OpenAI's ``n``) are fanned out to the engine by
``choices``; ``parallel_tool_calls: false`` is held to one call by ``single_call``; shadow copies
run in ``shadow``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from llmloop.core.chat import (
    EmbeddingResult,
    GenerationChunk,
    GenerationRequest,
    GenerationResult,
    ToolCallDelta,
    collect_tool_calls,
)
from llmloop.core.guards import GuardVerdict
from llmloop.core.traces import TraceRecord, new_trace_id, sampled
from llmloop.engines.base import Engine
from llmloop.errors import GuardBlockedError, LlmloopError, OverloadedError, RateLimitError
from llmloop.services.actors import Actor
from llmloop.services.gateway.choices import (
    ChoiceStreams,
    Opened,
    call_choices,
    choice_requests,
    note_choices,
    note_tool_calls,
    open_choices,
)
from llmloop.services.gateway.guarding import blocked_error, verdict_dicts
from llmloop.services.gateway.intake import (
    estimate_prompt_tokens,
    estimate_tokens,
    request_text,
    require_capable,
)
from llmloop.services.gateway.manager import DeploymentManager
from llmloop.services.gateway.metrics import GatewayMetrics
from llmloop.services.gateway.policy import LimitBackend, Reservation
from llmloop.services.gateway.responses import MemoryResponseStore, ResponseStore
from llmloop.services.gateway.router import DeploymentRuntime, Slot
from llmloop.services.gateway.shadow import run_shadow
from llmloop.services.gateway.single_call import chat_call, stream_call
from llmloop.services.gateway.trace_query import TraceQuery
from llmloop.services.gateway.tracing import TraceWriter
from llmloop.store.registry import utcnow

log = logging.getLogger("llmloop.gateway")
T = TypeVar("T")


class GatewayService:
    def __init__(
        self,
        manager: DeploymentManager,
        writer: TraceWriter,
        metrics: GatewayMetrics,
        limits: LimitBackend | None = None,
        device_hour_price: float = 0.0,
        traces: TraceQuery | None = None,
        responses: ResponseStore | None = None,
    ) -> None:
        self.manager = manager
        self.traces = traces if traces is not None else TraceQuery(writer.store)
        self.writer = writer
        self.metrics = metrics
        self.limits = limits
        self.device_hour_price = device_hour_price
        self.responses = responses if responses is not None else MemoryResponseStore()
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
        try:
            await runtime.admission.acquire()
        except OverloadedError:
            self.metrics.refuse(runtime.spec.name, "overloaded")
            raise
        if self.limits is None:
            return None
        try:
            est_cost = runtime.primaries[0].cost(est_tokens, 0)
            return await self.limits.reserve(actor, runtime.spec.name, est_tokens, est_cost)
        except RateLimitError as exc:
            runtime.admission.release()
            self.metrics.refuse(runtime.spec.name, str(exc.extra.get("limit", "rate")))
            raise
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
            left = isinstance(error, asyncio.CancelledError | GeneratorExit)  # the client went
            trace.status = "cancelled" if left else "error"
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
        self.metrics.count(trace)
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
        [result] = await self.generate_choices(actor, req, trace, 1)
        return result

    async def generate_choices(
        self, actor: Actor, req: GenerationRequest, trace: TraceRecord, n: int
    ) -> list[GenerationResult]:
        """``n`` whole answers (OpenAI's ``n``) admitted, limited and traced as one request."""
        started = time.perf_counter()
        runtime = await self.manager.get(req.model)
        reservation = await self._admit(actor, runtime, estimate_tokens(req, n))
        error: BaseException | None = None
        try:
            return await self._generate(runtime, actor, req, trace, n)
        except BaseException as exc:
            error = exc
            raise
        finally:
            await self._finish(runtime, reservation, trace, started, error)

    def _prepare(
        self, runtime: DeploymentRuntime, actor: Actor, req: GenerationRequest, trace: TraceRecord
    ) -> tuple[Slot, GenerationRequest]:
        """Before the engine: the trace's request side, the target, its capabilities, and the
        input guards (which may rewrite ``req``)."""
        trace.user = req.user
        if runtime.spec.log_text:
            trace.request_text = request_text(req)
        slot = runtime.pick(req.user or actor.key_id)
        self._fill(trace, slot, runtime)
        require_capable(slot.engine, req, runtime.spec.name)
        if runtime.guards is not None:
            try:
                req, verdicts = runtime.guards.check_request(req)
            except GuardBlockedError as exc:  # a block is a verdict too (guard_block_rate)
                trace.guard_verdicts = verdict_dicts(getattr(exc, "verdicts", []))
                raise
            trace.guard_verdicts = verdict_dicts(verdicts)
        return slot, req

    async def _generate(
        self,
        runtime: DeploymentRuntime,
        actor: Actor,
        req: GenerationRequest,
        trace: TraceRecord,
        n: int,
    ) -> list[GenerationResult]:
        slot, req = self._prepare(runtime, actor, req, trace)
        cache = runtime.cache if n == 1 else None  # a stored answer is one choice, not n
        hit = await cache.lookup(slot.resolved.key, req) if cache is not None else None
        trace.cache_hit = hit is not None
        t0 = time.perf_counter()
        if hit is not None:
            results = [hit.result]
        else:
            slot, results, attempts = await call_choices(runtime, slot, choice_requests(req, n))
            if attempts > n:
                self.metrics.retries.labels(runtime.spec.name).inc(attempts - n)
            self._fill(trace, slot, runtime)
            if cache is not None:
                await cache.store(slot.resolved.key, req, results[0])
            self._shadow(runtime, trace, chat_call(req))
        if runtime.guards is not None:
            try:
                checked = [runtime.guards.check_result(r) for r in results]
            except GuardBlockedError as exc:
                blocked = verdict_dicts(getattr(exc, "verdicts", []))
                trace.guard_verdicts = [*(trace.guard_verdicts or []), *blocked]
                raise
            results = [r for r, _ in checked]
            found = [v for _, verdicts in checked for v in verdicts]
            trace.guard_verdicts = [*(trace.guard_verdicts or []), *verdict_dicts(found)]
        note_choices(trace, results, runtime.spec.log_text)
        if not trace.cache_hit:
            trace.cost = self._cost(slot, n * trace.input_tokens, trace.output_tokens,
                                    time.perf_counter() - t0)  # fmt: skip
        return results

    async def stream(
        self, actor: Actor, req: GenerationRequest, trace: TraceRecord
    ) -> AsyncIterator[GenerationChunk]:
        """Open a stream: errors before the first chunk raise here (so they get a status code);
        the returned iterator yields every chunk and must be closed (a disconnect closes it)."""
        started = time.perf_counter()
        runtime = await self.manager.get(req.model)
        reservation = await self._admit(actor, runtime, estimate_tokens(req))
        try:
            slot, req = self._prepare(runtime, actor, req, trace)
            slot, first, iterator = await runtime.open_stream(slot, stream_call(req))
        except BaseException as exc:
            await self._finish(runtime, reservation, trace, started, exc)
            raise
        trace.ttft_ms = (time.perf_counter() - started) * 1000.0
        self._fill(trace, slot, runtime)
        self._shadow(runtime, trace, chat_call(req))
        opened: Opened = (slot, first, iterator)
        prompt_tokens = estimate_prompt_tokens(req)
        if runtime.guards is None:
            return self._relay(runtime, reservation, trace, started, opened, prompt_tokens)
        live: list[GuardVerdict] = []
        chunks = self._relay(runtime, reservation, trace, started, opened, prompt_tokens, live)
        return runtime.guards.stream(chunks, live)

    async def stream_choices(
        self, actor: Actor, req: GenerationRequest, trace: TraceRecord, n: int
    ) -> AsyncIterator[tuple[int, GenerationChunk]]:
        """``n`` answers streamed together as ``(choice index, chunk)``; as :meth:`stream`,
        errors before every choice has its first chunk raise here."""
        started = time.perf_counter()
        runtime = await self.manager.get(req.model)
        reservation = await self._admit(actor, runtime, estimate_tokens(req, n))
        try:
            slot, req = self._prepare(runtime, actor, req, trace)
            opened = await open_choices(runtime, slot, choice_requests(req, n))
        except BaseException as exc:
            await self._finish(runtime, reservation, trace, started, exc)
            raise
        trace.ttft_ms = (time.perf_counter() - started) * 1000.0
        self._fill(trace, opened[0][0], runtime)
        self._shadow(runtime, trace, chat_call(req))
        streams = ChoiceStreams(opened, runtime.guards, estimate_prompt_tokens(req))
        return self._relay_choices(runtime, reservation, trace, started, streams)

    async def _relay_choices(
        self,
        runtime: DeploymentRuntime,
        reservation: Reservation | None,
        trace: TraceRecord,
        started: float,
        streams: ChoiceStreams,
    ) -> AsyncIterator[tuple[int, GenerationChunk]]:
        error: BaseException | None = None
        try:
            async with contextlib.aclosing(streams.chunks()) as chunks:
                async for item in chunks:
                    yield item
        except BaseException as exc:
            error = exc
            raise
        finally:
            try:
                await streams.aclose()
            finally:
                streams.note(trace, runtime.spec.log_text)
                tokens_in, seconds = streams.n * trace.input_tokens, time.perf_counter() - started
                trace.cost = self._cost(streams.slot, tokens_in, trace.output_tokens, seconds)
                await self._finish(runtime, reservation, trace, started, error)

    async def _relay(
        self,
        runtime: DeploymentRuntime,
        reservation: Reservation | None,
        trace: TraceRecord,
        started: float,
        opened: Opened,
        prompt_tokens: int,
        output_verdicts: list[GuardVerdict] | None = None,
    ) -> AsyncIterator[GenerationChunk]:
        """Relay one stream, noting it on the trace. Usage comes with the last chunk; a stream
        without it (ended by a disconnect, a guard or an error; an upstream that sends none) is
        charged an estimate: the prompt's (``prompt_tokens``) and a token per chunk streamed."""
        slot, first, iterator = opened
        keep_text = runtime.spec.log_text
        parts: list[str] = []
        calls: list[ToolCallDelta] = []
        pieces, usage_seen = 0, False
        error: BaseException | None = None
        try:
            chunk: GenerationChunk | None = first
            while chunk is not None:
                if keep_text and chunk.text:
                    parts.append(chunk.text)
                if chunk.tool_calls:
                    calls += chunk.tool_calls
                if chunk.text or chunk.tool_calls:
                    pieces += 1
                if chunk.usage is not None:
                    usage_seen = True
                    trace.input_tokens = chunk.usage.prompt_tokens
                    trace.output_tokens = chunk.usage.completion_tokens
                if chunk.finish_reason is not None:
                    trace.finish_reason = chunk.finish_reason
                yield chunk
                chunk = await anext(iterator, None)
        except GeneratorExit as exc:  # closed by the consumer: a guard after the final chunk
            if trace.finish_reason is None:  # (no error), or a client that left mid-stream
                error = exc
            raise
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
                block = next((v for v in output_verdicts or () if v.action == "block"), None)
                if block is not None and isinstance(error, GeneratorExit):  # a guard's, not a
                    error = blocked_error(block, output_verdicts or [])  # client that left
                if not usage_seen:  # ended early, or an upstream that sends no usage
                    trace.input_tokens, trace.output_tokens = prompt_tokens, pieces
                    trace.extra["llmloop.usage_estimated"] = True
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
        self._spawn(run_shadow(runtime, slot, parent, fn, self.metrics, self.writer))

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
        await self.responses.aclose()
        if self.limits is not None:
            await self.limits.aclose()
