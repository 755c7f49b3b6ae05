"""Prometheus metrics of the gateway, in a registry of their own (one per app, so tests and
several apps in one process do not collide). Served at ``/metrics`` by the API edge.

Each process exposes its own counters; with ``serve --workers N`` scrape each worker or use
Prometheus' multiprocess mode. This module only counts; it decides nothing.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from llmloop.core.traces import TraceRecord

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

    def count(self, trace: TraceRecord) -> None:
        """A finished request: its outcome, latency, time to first token, tokens, cache hit."""
        dep, op = trace.deployment, trace.operation
        self.requests.labels(dep, op, trace.status).inc()
        self.latency.labels(dep, op).observe(trace.latency_ms / 1000.0)
        if trace.ttft_ms is not None:
            self.ttft.labels(dep).observe(trace.ttft_ms / 1000.0)
        if trace.input_tokens:
            self.tokens.labels(dep, "input").inc(trace.input_tokens)
        if trace.output_tokens:
            self.tokens.labels(dep, "output").inc(trace.output_tokens)
        if trace.cache_hit:
            self.cache_hits.labels(dep).inc()

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
