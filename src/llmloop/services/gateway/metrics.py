"""Prometheus metrics of the gateway, in a registry of their own (one per app, so tests and
several apps in one process do not collide). Served at ``/metrics`` by the API edge.

One process exposes its own counters. Several processes behind one port (``serve --workers N``)
use prometheus_client's multiprocess mode: ``llmloop serve`` gives the workers one folder
(``PROMETHEUS_MULTIPROC_DIR``) where every process keeps its values, and :meth:`render` with
``multiprocess_dir`` set sums them, so whichever worker answers a scrape reports them all. The
load gauges (in flight, queued, trace queue) are sampled, not counted per request: at each
scrape, and every second per worker in multiprocess mode (``sample``). This module only counts;
it decides nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from llmloop.core.traces import TraceRecord
from llmloop.services.gateway.admission import Admission

#: Label combinations whose children are cached (beyond it the cache starts again).
_MAX_CACHED = 4096
#: Time to first token: milliseconds (cache, echo) to a minute (a long prompt on a busy CPU).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
#: Whole requests: a long generation runs for minutes.
REQUEST_BUCKETS = (*LATENCY_BUCKETS, 120, 300, 600)


class GatewayMetrics:
    def __init__(self, multiprocess_dir: str | None = None) -> None:
        #: prometheus_client's multiprocess folder shared by the server's workers, if any.
        self.multiprocess_dir = multiprocess_dir
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("llmloop_gateway_requests", "Gateway requests by outcome.",
                                ["deployment", "operation", "status"], registry=r)  # fmt: skip
        self.latency = Histogram("llmloop_gateway_latency_seconds", "Request latency.",
                                 ["deployment", "operation"], buckets=REQUEST_BUCKETS,
                                 registry=r)  # fmt: skip
        self.ttft = Histogram("llmloop_gateway_ttft_seconds", "Time to first streamed token.",
                              ["deployment"], buckets=LATENCY_BUCKETS, registry=r)  # fmt: skip
        self.tokens = Counter("llmloop_gateway_tokens", "Tokens in and out.",
                              ["deployment", "direction"], registry=r)  # fmt: skip
        self.cache_hits = Counter("llmloop_gateway_cache_hits", "Answers served from the cache.",
                                  ["deployment"], registry=r)  # fmt: skip
        # Gauges of several workers add up (livesum: the live processes' values).
        self.in_flight = Gauge("llmloop_gateway_in_flight", "Requests running now.",
                               ["deployment"], registry=r,
                               multiprocess_mode="livesum")  # fmt: skip
        self.queued = Gauge("llmloop_gateway_queued", "Requests waiting for admission now.",
                            ["deployment"], registry=r, multiprocess_mode="livesum")  # fmt: skip
        self.queue_depth = Gauge("llmloop_gateway_trace_queue_depth",
                                 "Trace records waiting to be written.", registry=r,
                                 multiprocess_mode="livesum")  # fmt: skip
        self.trace_batch = Histogram("llmloop_gateway_trace_batch_size",
                                     "Rows per trace bulk insert.",
                                     buckets=(1, 5, 10, 50, 100, 500, 1000, 5000),
                                     registry=r)  # fmt: skip
        self.traces_dropped = Gauge("llmloop_gateway_traces_dropped",
                                    "Trace records dropped because the queue was full.",
                                    registry=r, multiprocess_mode="livesum")  # fmt: skip
        self.refused = Counter("llmloop_gateway_refused_requests",
                               "Requests refused before they ran: reason overloaded (503) or "
                               "the key's limit (rpm, tpm, max_concurrent, budget_usd: 429).",
                               ["deployment", "reason"], registry=r)  # fmt: skip
        self.retries = Counter("llmloop_gateway_retries", "Extra attempts (retries, fallbacks).",
                               ["deployment"], registry=r)  # fmt: skip
        self.shadow = Counter("llmloop_gateway_shadow_requests", "Shadow copies by outcome.",
                              ["deployment", "status"], registry=r)  # fmt: skip

        # Labelled children by label values: ``labels()`` checks and locks on every call, and
        # four of them cost a request 5 µs. Children are never removed, so the cache holds.
        self._children: dict[tuple[Any, ...], Any] = {}
        self._sampled: set[str] = set()  # deployments whose load gauges were set

    def _child(self, metric: Any, *values: str) -> Any:
        key = (metric, *values)
        child = self._children.get(key)
        if child is None:
            if len(self._children) > _MAX_CACHED:
                self._children.clear()
            child = self._children[key] = metric.labels(*values)
        return child

    def count(self, trace: TraceRecord) -> None:
        """A finished request: its outcome, latency, time to first token, tokens, cache hit."""
        dep, op = trace.deployment, trace.operation
        self._child(self.requests, dep, op, trace.status).inc()
        self._child(self.latency, dep, op).observe(trace.latency_ms / 1000.0)
        if trace.ttft_ms is not None:
            self._child(self.ttft, dep).observe(trace.ttft_ms / 1000.0)
        if trace.input_tokens:
            self._child(self.tokens, dep, "input").inc(trace.input_tokens)
        if trace.output_tokens:
            self._child(self.tokens, dep, "output").inc(trace.output_tokens)
        if trace.cache_hit:
            self._child(self.cache_hits, dep).inc()

    def refuse(self, deployment: str, reason: str) -> None:
        """A request refused by admission (``overloaded``) or by a limit of its key."""
        self._child(self.refused, deployment, reason).inc()

    def sample(
        self, admissions: Iterable[Admission], trace_depth: int, traces_dropped: int
    ) -> None:
        """Set the load gauges from the deployments' admission and the trace writer (a
        deployment that went away reads 0)."""
        gone = self._sampled
        self._sampled = set()
        for admission in admissions:
            self._child(self.in_flight, admission.name).set(admission.in_flight)
            self._child(self.queued, admission.name).set(admission.queued)
            self._sampled.add(admission.name)
        for name in gone - self._sampled:
            self._child(self.in_flight, name).set(0)
            self._child(self.queued, name).set(0)
        self.queue_depth.set(trace_depth)
        self.traces_dropped.set(traces_dropped)

    def render(self) -> bytes:
        """The text exposition format: this process's metrics, or in multiprocess mode those of
        every process that shares the folder."""
        if not self.multiprocess_dir:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self.multiprocess_dir)
        return generate_latest(registry)
