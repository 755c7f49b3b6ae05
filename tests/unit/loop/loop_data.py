"""Test data of the loop: traces written the way the gateway writes them (``TraceTable.row``
and ``TraceTable.insert``, as ``TraceWriter`` batches them)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from llmloop.core.ids import new_id
from llmloop.core.traces import TraceRecord
from llmloop.services.container import Container
from llmloop.services.gateway.trace_table import TraceTable

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def add_traces(c: Container, records: list[dict[str, Any]]) -> list[str]:
    """Write traces built from keyword dicts (defaults: a chat on 'dep' answered 'ok')."""
    table = TraceTable(c.store, max_text=4000)
    traces = []
    for spec in records:
        spec = dict(spec)
        spec.setdefault("id", new_id("trace"))
        spec.setdefault("at", NOW)
        spec.setdefault("operation", "chat")
        spec.setdefault("deployment", "dep")
        traces.append(TraceRecord(**spec))
    table.insert([table.row(trace) for trace in traces])
    return [trace.id for trace in traces]


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)
