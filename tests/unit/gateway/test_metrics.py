"""Gateway metrics count into the same series whether their children come from the cache or
are looked up again after it was emptied."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from llmloop.core.traces import TraceRecord
from llmloop.services.gateway import metrics as metrics_module
from llmloop.services.gateway.metrics import GatewayMetrics
from llmloop.store.registry import utcnow


def _trace(dep: str, status: str = "ok", ttft: float | None = None) -> TraceRecord:
    return TraceRecord(id="tr_x", at=utcnow(), operation="chat", deployment=dep, status=status,
                       latency_ms=3.0, ttft_ms=ttft, input_tokens=2, output_tokens=5)  # fmt: skip


def _samples(m: GatewayMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(m.render().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


@pytest.mark.parametrize("cache_size", [4096, 1])
def test_counts_land_in_their_series(monkeypatch: pytest.MonkeyPatch, cache_size: int) -> None:
    monkeypatch.setattr(metrics_module, "_MAX_CACHED", cache_size)
    m = GatewayMetrics()
    for dep in ("a", "b", "c"):
        for _ in range(3):
            m.count(_trace(dep, ttft=10.0))
        m.count(_trace(dep, status="error"))
    got = _samples(m)
    for dep in ("a", "b", "c"):
        ok = (("deployment", dep), ("operation", "chat"), ("status", "ok"))
        error = (("deployment", dep), ("operation", "chat"), ("status", "error"))
        assert got[("llmloop_gateway_requests_total", ok)] == 3
        assert got[("llmloop_gateway_requests_total", error)] == 1
        latency = (("deployment", dep), ("operation", "chat"))
        assert got[("llmloop_gateway_latency_seconds_count", latency)] == 4
        assert got[("llmloop_gateway_ttft_seconds_count", (("deployment", dep),))] == 3
        tokens_out = (("deployment", dep), ("direction", "output"))
        assert got[("llmloop_gateway_tokens_total", tokens_out)] == 20
    # no series for what never happened
    assert not any(name.startswith("llmloop_gateway_cache_hits_total") for name, _ in got)


def test_load_gauges_follow_admission_and_a_removed_deployment_reads_zero() -> None:
    from llmloop.core.deployments import AdmissionPolicy
    from llmloop.services.gateway.admission import Admission

    m = GatewayMetrics()
    a, b = Admission("a", AdmissionPolicy()), Admission("b", AdmissionPolicy())
    a.in_flight, b.in_flight = 3, 1
    m.sample([a, b], trace_depth=7, traces_dropped=2)
    got = _samples(m)
    assert got[("llmloop_gateway_in_flight", (("deployment", "a"),))] == 3
    assert got[("llmloop_gateway_queued", (("deployment", "b"),))] == 0
    assert got[("llmloop_gateway_trace_queue_depth", ())] == 7
    m.sample([a], trace_depth=0, traces_dropped=2)  # b was deleted
    assert _samples(m)[("llmloop_gateway_in_flight", (("deployment", "b"),))] == 0
