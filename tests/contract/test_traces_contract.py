"""The trace writer on both backends: batches through the writer process, stored once each."""

from __future__ import annotations

import asyncio

from llmloop.core.traces import TraceRecord, new_trace_id
from llmloop.services.container import Container
from llmloop.services.gateway.trace_process import ProcessSink
from llmloop.services.gateway.trace_table import TraceTable
from llmloop.services.gateway.tracing import TraceWriter
from llmloop.store.registry import utcnow


def _record(i: int) -> TraceRecord:
    return TraceRecord(
        id=new_trace_id(),
        at=utcnow(),
        operation="chat",
        deployment="d",
        request_model="d",
        user="u" if i % 2 else None,
        input_tokens=i,
        guard_verdicts=[{"guard": "deny", "action": "allow"}] if i % 3 == 0 else None,
        extra={"i": i},
    )


def test_the_writer_process_stores_every_trace_once(container: Container) -> None:
    store = container.store
    records = [_record(i) for i in range(120)]

    async def write() -> TraceWriter:
        writer = TraceWriter(store, flush_ms=20, batch_size=50, sink=ProcessSink(store.url))
        for rec in records:
            writer.submit(rec)
        await writer.aclose()
        return writer

    writer = asyncio.run(write())
    assert writer.written == 120 and writer.sink is not None  # the process wrote them all
    table = TraceTable(store, 4000)
    assert table.insert([table.row(records[0]), table.row(_record(999))]) == 1  # one was stored
    traces = container.gateway.traces
    assert traces.count() == 121
    got = traces.get(records[3].id)
    assert got is not None and got.user == "u" and got.input_tokens == 3
    assert got.guard_verdicts == [{"guard": "deny", "action": "allow"}]
    assert got.at == records[3].at and got.attributes["i"] == 3
    plain = traces.get(records[4].id)
    assert plain is not None and plain.user is None and plain.guard_verdicts is None
