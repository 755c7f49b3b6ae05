"""Test data of the loop: traces written the way the gateway writes them (``TraceRecord.to_row``
into the ``traces`` table, as ``TraceWriter`` batches them)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from llmloop.core.ids import new_id
from llmloop.core.traces import TraceRecord
from llmloop.services.container import Container
from llmloop.store import tables as t

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def add_traces(c: Container, records: list[dict[str, Any]]) -> list[str]:
    """Write traces built from keyword dicts (defaults: a chat on 'dep' answered 'ok')."""
    rows = []
    for spec in records:
        spec = dict(spec)
        spec.setdefault("id", new_id("trace"))
        spec.setdefault("at", NOW)
        spec.setdefault("operation", "chat")
        spec.setdefault("deployment", "dep")
        rows.append(TraceRecord(**spec).to_row(4000))
    with c.store.transaction() as tx:
        tx.insert_many(t.traces, rows)
    return [r["id"] for r in rows]


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)
