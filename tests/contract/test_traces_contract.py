"""The trace writer on both backends: batches through the writer process, stored once each;
the traces table's indexes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone

import sqlalchemy as sa
from alembic import command

from llmloop.core.traces import TraceRecord, new_trace_id
from llmloop.services.container import Container
from llmloop.services.gateway.trace_process import ProcessSink
from llmloop.services.gateway.trace_table import TraceTable
from llmloop.services.gateway.tracing import TraceWriter
from llmloop.store import db
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


def test_a_time_in_another_zone_is_stored_as_the_same_instant(container: Container) -> None:
    """Rows carry the time as microseconds since the epoch: a record stamped in +02:00 (an OTLP
    span's time, say) is stored as its UTC time, not as the wall time of its zone."""
    store = container.store
    table = TraceTable(store, 4000)
    east = datetime(2026, 5, 1, 12, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))
    naive = datetime(2026, 5, 1, 9, 0, 0, 7)  # no zone: taken as UTC
    records = [_record(1), _record(2)]
    records[0].at, records[1].at = east, naive
    table.insert([table.row(r) for r in records])
    traces = container.gateway.traces
    assert traces.get(records[0].id).at == east  # the same instant
    assert traces.get(records[1].id).at == naive.replace(tzinfo=UTC)
    since = datetime(2026, 5, 1, 10, 30, 15, 123456, tzinfo=UTC)
    assert [t.id for t in traces.list(since=since)] == [records[0].id]


def test_the_parent_index_holds_only_shadow_copies(database_url: str) -> None:
    """0008 makes ``ix_traces_parent`` partial (``parent_id IS NOT NULL``): primaries, whose
    parent is NULL, cost no index entry; the shadow copies of a trace are still found by it."""
    engine = db.create_db_engine(database_url)
    try:
        db.upgrade(engine, "0007")
        assert _parent_index(engine) is None  # a full index before
        db.upgrade(engine)
        where = _parent_index(engine)
        assert where is not None and "parent_id IS NOT NULL" in where.replace("(", "").replace(
            ")", ""
        )
        if engine.dialect.name == "sqlite":
            with engine.connect() as conn:
                plan = conn.exec_driver_sql(
                    "EXPLAIN QUERY PLAN SELECT id FROM traces WHERE parent_id = 'tr_x'"
                ).fetchall()
            assert "ix_traces_parent" in str(plan)
        with engine.begin() as conn:
            command.downgrade(db._alembic_config(engine, conn), "0007")
        assert _parent_index(engine) is None
    finally:
        engine.dispose()


def _parent_index(engine: sa.Engine) -> str | None:
    """The WHERE of ``ix_traces_parent`` (None: a full index); fails when there is none."""
    [index] = [
        i for i in sa.inspect(engine).get_indexes("traces") if i["name"] == "ix_traces_parent"
    ]
    assert index["column_names"] == ["parent_id"]
    options = index.get("dialect_options", {})
    where = options.get("sqlite_where", options.get("postgresql_where"))
    return None if where is None else str(where)
