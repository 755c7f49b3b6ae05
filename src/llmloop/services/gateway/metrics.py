"""Prometheus metrics of the gateway, in a registry of their own (one per app, so tests and
several apps in one process do not collide). Served at ``/metrics`` by the API edge.

Each process exposes its own counters; with ``serve --workers N`` scrape each worker or use
Prometheus' multiprocess mode. This module only counts; it decides nothing.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from llmloop.core.traces import TraceRecord

#: Label combinations whose children are cached (beyond it the cache starts again).
_MAX_CACHED = 4096
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("llmloop_gateway_requests", "Gateway requests by outcome.",
                                ["deployment", "operation", "status"], registry=r)  # fmt: skip
        self.latency = Histogram("llmloop_gateway_latency_seconds", "Request latency.",
                                 ["deployment", "operation"], buckets=LATENCY_BUCKETS,
                                 registry=r)  # fmt: skip
        self.ttft = Histogram("llmloop_gateway_ttft_seconds", "Time to first streamed token.",
                              ["deployment"], buckets=LATENCY_BUCKETS, registry=r)  # fmt: skip
        self.tokens = Counter("llmloop_gateway_tokens", "Tokens in and out.",
                              ["deployment", "direction"], registry=r)  # fmt: skip
        self.cache_hits = Counter("llmloop_gateway_cache_hits", "Answers served from the cache.",
                                  ["deployment"], registry=r)  # fmt: skip
        self.in_flight = Gauge("llmloop_gateway_in_flight", "Requests running now.",
                               ["deployment"], registry=r)  # fmt: skip
        self.queue_depth = Gauge("llmloop_gateway_trace_queue_depth",
                                 "Trace records waiting to be written.", registry=r)  # fmt: skip
        self.trace_batch = Histogram("llmloop_gateway_trace_batch_size",
                                     "Rows per trace bulk insert.",
                                     buckets=(1, 5, 10, 50, 100, 500, 1000, 5000),
                                     registry=r)  # fmt: skip
        self.traces_dropped = Gauge("llmloop_gateway_traces_dropped",
                                    "Trace records dropped because the queue was full.",
                                    registry=r)  # fmt: skip
        self.retries = Counter("llmloop_gateway_retries", "Extra attempts (retries, fallbacks).",
                               ["deployment"], registry=r)  # fmt: skip
        self.shadow = Counter("llmloop_gateway_shadow_requests", "Shadow copies by outcome.",
                              ["deployment", "status"], registry=r)  # fmt: skip

        # Labelled children by label values: ``labels()`` checks and locks on every call, and
        # four of them cost a request 5 µs. Children are never removed, so the cache holds.
        self._children: dict[tuple[Any, ...], Any] = {}

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

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
