"""The trace writer: an asynchronous, batched, bounded writer of gateway trace records.

``submit`` is a non-blocking append from the request path: the record becomes a row of plain
values at once (``TraceTable.row``; queued objects would cost every garbage collection). A
background task flushes every ``flush_ms`` or as soon as ``batch_size`` rows wait: each batch
goes to the writer process (``trace_process.py``, the server's default) or is inserted from a
worker thread, in multi-row statements on SQLite. The queue is bounded: when it is full the
oldest unwritten row is dropped and counted, so a slow database never slows requests.
``aclose`` flushes everything left, so a clean shutdown loses nothing. Spans are exported through
the OpenTelemetry SDK when an exporter is configured. Nothing here decides what a trace holds.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
import sqlalchemy as sa

from llmloop.core.traces import TracePublic, TraceRecord
from llmloop.errors import require_extra
from llmloop.store import tables as t
from llmloop.store.registry import Store

log = logging.getLogger("llmloop.gateway.traces")


class _DumpedJSON(sa.types.TypeDecorator[Any]):
    """A JSON column whose values arrive already serialised (by orjson, several times faster
    than the dialect's ``json.dumps``); the database still sees a JSON value."""

    impl = sa.JSON
    cache_ok = True

    def bind_processor(self, dialect: sa.Dialect) -> None:  # type: ignore[override]
        return None


#: Times a sink may die (it is restarted for the next batch) before the writer stops using it.
_SINK_RETRIES = 3
#: Rows inserted per step of a batch (about a millisecond of the GIL).
_CHUNK = 128
#: One trace as the values of a ``traces`` row, in column order (see ``TraceTable.row``).
TraceRow = tuple[Any, ...]
_COLUMNS = [c.name for c in t.traces.columns]
_ID = _COLUMNS.index("id")
#: The generic insert (PostgreSQL): both JSON columns arrive as JSON text already.
_INSERT = t.traces.insert().values(
    attributes=sa.bindparam("attributes", type_=_DumpedJSON()),
    guard_verdicts=sa.bindparam("guard_verdicts", type_=_DumpedJSON()),
)


def _dump_attributes(attrs: dict[str, Any]) -> str:
    try:
        return orjson.dumps(attrs, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # what orjson cannot encode (e.g. huge ints): the standard library's way
        return json.dumps(attrs, default=str)


class _SQLiteBulk:
    """SQLite's bulk path: one ``INSERT ... VALUES (...), (...)`` per chunk, on the driver.

    ``executemany`` steps the statement once per row, and the driver releases and re-takes the
    GIL around every step: at thousands of rows a second that hand-off, contended by the event
    loop's thread, cost more than the insert itself. One multi-row statement per chunk takes
    the GIL back once; the rows are already the values SQLAlchemy would bind.
    """

    def __init__(self) -> None:
        quoted = ", ".join(f'"{name}"' for name in _COLUMNS)
        self.head = f"INSERT INTO traces ({quoted}) VALUES "
        self.group = "(" + ", ".join("?" * len(_COLUMNS)) + ")"
        self.sql: dict[int, str] = {}

    def __call__(self, conn: sa.Connection, rows: list[TraceRow]) -> None:
        params: list[Any] = []
        for row in rows:
            params.extend(row)
        sql = self.sql.get(len(rows))
        if sql is None:
            sql = self.sql[len(rows)] = self.head + ", ".join([self.group] * len(rows))
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(sql, params)
        finally:
            cursor.close()


class TraceTable:
    """Trace records as rows of the store's ``traces`` table, and their bulk insert.

    ``row`` turns a record into a tuple of plain values as soon as it is submitted: a queued
    tuple of strings and numbers is left alone by the garbage collector, where thousands of
    queued record objects (each with its dicts) were rescanned by every collection. On SQLite
    the values are the text SQLAlchemy would bind (DATETIME as ``YYYY-MM-DD HH:MM:SS.ffffff``
    without offset, JSON through ``json.dumps``, ``None`` as ``'null'``; a test keeps the two
    paths equal) and go straight to the driver; elsewhere they go through SQLAlchemy.
    Used by the writer's thread and by the writer process alike. ``skip_existing`` leaves out
    rows whose id is already stored: after a writer process died, the batch it held may or may
    not have been committed, and writing it again must not fail on the primary key.
    """

    def __init__(self, store: Store, max_text: int, share_gil: bool = True) -> None:
        self.store = store
        self.max_text = max_text
        self.share_gil = share_gil  # another thread (the event loop's) needs the GIL too
        self.sqlite = store.engine.dialect.name == "sqlite"
        self._bulk = _SQLiteBulk() if self.sqlite else None

    def row(self, rec: TraceRecord) -> TraceRow:
        cut = self.max_text
        verdicts = rec.guard_verdicts
        return (
            rec.id,
            rec.at.isoformat(" ", "microseconds")[:26] if self.sqlite else rec.at,
            rec.kind,
            rec.parent_id,
            rec.operation,
            rec.deployment,
            rec.request_model,
            rec.response_model,
            rec.model_version_id,
            rec.target[:256],
            rec.key_id,
            (rec.user or None) and rec.user[:256],
            rec.status,
            rec.http_status,
            rec.error,
            rec.stream,
            rec.latency_ms,
            rec.ttft_ms,
            rec.input_tokens,
            rec.output_tokens,
            rec.cost,
            rec.cache_hit,
            rec.finish_reason,
            "null" if verdicts is None else json.dumps(verdicts, default=str),
            _dump_attributes(rec.extra),  # the rest of the attributes are the columns
            rec.request_text[:cut],
            rec.response_text[:cut],
        )

    def insert(self, rows: list[TraceRow], skip_existing: bool = False) -> int:
        with self.store.transaction() as tx:
            if skip_existing:
                ids = [row[_ID] for row in rows]
                stmt = sa.select(t.traces.c.id).where(t.traces.c.id.in_(ids))
                stored = set(tx.conn.execute(stmt).scalars())
                rows = [row for row in rows if row[_ID] not in stored]
            for i in range(0, len(rows), _CHUNK):
                chunk = rows[i : i + _CHUNK]
                if self._bulk is not None:
                    self._bulk(tx.conn, chunk)
                else:
                    tx.conn.execute(
                        _INSERT, [dict(zip(_COLUMNS, row, strict=True)) for row in chunk]
                    )
                # Give the GIL back between chunks: the event loop's thread never waits for a
                # whole batch (or a 5 ms switch interval) behind this one.
                if self.share_gil:
                    time.sleep(0)
        return len(rows)


class SpanExporter:
    """Turns trace rows into OpenTelemetry spans (console or OTLP), off the request path."""

    def __init__(self, kind: str, endpoint: str = "") -> None:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        exporter: Any
        if kind == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            exporter = ConsoleSpanExporter(out=sys.stdout)  # today's stdout, not import time's
        else:
            require_extra("opentelemetry.exporter.otlp", "otel", "OTLP span export")
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter(endpoint=endpoint) if endpoint else OTLPSpanExporter()
        self.provider = TracerProvider(resource=Resource.create({"service.name": "llmloop"}))
        self.provider.add_span_processor(BatchSpanProcessor(exporter))
        self.tracer = self.provider.get_tracer("llmloop.gateway")

    def export(self, rows: list[TraceRow]) -> None:
        for row in rows:
            fields = dict(zip(_COLUMNS, row, strict=True))
            if isinstance(fields["at"], str):  # SQLite's text form, UTC
                fields["at"] = datetime.fromisoformat(fields["at"]).replace(tzinfo=UTC)
            fields["guard_verdicts"] = orjson.loads(fields["guard_verdicts"])
            fields["attributes"] = orjson.loads(fields["attributes"])
            trace = TracePublic.model_validate(fields)
            start_ns = int(trace.at.timestamp() * 1e9)
            end_ns = start_ns + int(trace.latency_ms * 1e6)
            attrs = trace.attributes
            span = self.tracer.start_span(
                f"{trace.operation} {trace.request_model}",
                start_time=start_ns,
                attributes={
                    k: v for k, v in attrs.items() if isinstance(v, str | bool | int | float | list)
                },
            )
            span.set_attribute("llmloop.trace_id", trace.id)
            span.end(end_time=end_ns)

    def shutdown(self) -> None:
        self.provider.shutdown()


class TraceSink(Protocol):
    """Somewhere else that writes batches (the writer process): blocking calls, run in a thread."""

    def open(self) -> None:
        """Get ready ahead of the first batch; raise :class:`SinkGone` when it cannot."""

    def write(self, batch: list[TraceRow]) -> None:
        """Store ``batch``; raise :class:`SinkGone` when the sink cannot go on."""

    def close(self) -> None:
        """Finish: everything acknowledged is stored; stop the sink."""


class SinkGone(Exception):
    """The sink is gone (its process died or stopped answering); write in this process now."""


class TraceWriter:
    def __init__(
        self,
        store: Store,
        flush_ms: int = 200,
        batch_size: int = 500,
        max_queue: int = 100_000,
        max_text: int = 4000,
        exporter: SpanExporter | None = None,
        on_flush: Callable[[int], None] | None = None,
        sink: TraceSink | None = None,
    ) -> None:
        self.store = store
        self.flush_s = flush_ms / 1000.0
        self.batch_size = batch_size
        self.max_queue = max_queue
        self.max_text = max_text
        self.exporter = exporter
        self.on_flush = on_flush
        self.sink = sink
        self.table = TraceTable(store, max_text)
        self.queue: deque[TraceRow] = deque()
        self.dropped = 0
        self.written = 0
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._lock = threading.Lock()  # one batch at a time, whichever event loop flushes
        self._recovering = False  # a sink died: its last batch may be stored already
        self._sink_failures = 0

    def submit(self, record: TraceRecord) -> None:
        """Queue one record (as its row); never blocks and never raises."""
        if len(self.queue) >= self.max_queue:
            self.queue.popleft()
            self.dropped += 1
        self.queue.append(self.table.row(record))
        if self._task is None and not self._closing:
            self.start()
        if len(self.queue) >= self.batch_size and self._wake is not None:
            self._wake.set()

    def start(self) -> None:
        """Start the flush task on the running loop (done lazily by the first submit)."""
        if self._task is None:
            self._wake = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        """Write a batch as soon as ``batch_size`` rows wait, and the rest every ``flush_s``.

        Rows that arrive while a batch is being written wait for the next full batch or the
        next tick: writing them at once would chain small batches back to back under load
        (each a thread hand-off, a pipe round trip and a commit), which cost requests more
        than the rows themselves.
        """
        assert self._wake is not None
        if self.sink is not None:
            await asyncio.to_thread(self._open_sink)
        loop = asyncio.get_running_loop()
        due = loop.time() + self.flush_s
        while not self._closing:
            wait_s = due - loop.time()
            if wait_s > 0 and len(self.queue) < self.batch_size:
                try:
                    await asyncio.wait_for(self._wake.wait(), wait_s)
                except TimeoutError:
                    pass
            self._wake.clear()
            tick = loop.time() >= due
            await self.flush(full_only=not tick)
            if tick:
                due = loop.time() + self.flush_s

    async def flush(self, full_only: bool = False) -> int:
        """Write the rows queued now, in batches (only full ones with ``full_only``); rows that
        arrive meanwhile wait for the next call. Returns how many rows were written."""
        total = 0
        pending = len(self.queue)
        while min(pending, len(self.queue)) >= (self.batch_size if full_only else 1):
            size = min(self.batch_size, pending, len(self.queue))
            pending -= size
            batch = [self.queue.popleft() for _ in range(size)]
            try:
                await asyncio.to_thread(self._write, batch)
            except Exception:
                log.exception("writing %d traces failed; will retry", len(batch))
                self.queue.extendleft(reversed(batch))
                await asyncio.sleep(min(1.0, self.flush_s * 5))
                if self._closing:
                    raise
                return total
            total += len(batch)
        return total

    def _write(self, batch: list[TraceRow]) -> None:
        """One batch, in a worker thread: to the sink when there is one, else to the store."""
        with self._lock:
            if self.sink is not None:
                try:
                    self.sink.write(batch)  # the sink's process exports spans itself
                except SinkGone as exc:
                    self._sink_failures += 1
                    if self._sink_failures >= _SINK_RETRIES:
                        self.sink = None
                    log.warning(
                        "trace writer process gone (%s); this batch is written in this process%s",
                        exc,
                        ", and all that follow" if self.sink is None else "",
                    )
                    self._recovering = True
                else:
                    self._written(len(batch))
                    return
            self.table.insert(batch, skip_existing=self._recovering)
            self._recovering = False
            self._written(len(batch))
            if self.exporter is not None:
                self.exporter.export(batch)

    def _open_sink(self) -> None:
        with self._lock:
            if self.sink is not None:
                try:
                    self.sink.open()
                except SinkGone as exc:
                    log.warning("trace writer process failed (%s); writing in this process", exc)
                    self.sink = None

    def _written(self, n: int) -> None:
        self.written += n
        if self.on_flush is not None:
            self.on_flush(n)

    async def aclose(self) -> None:
        """Stop the task and write every queued record (a clean shutdown loses nothing)."""
        self._closing = True
        if self._task is not None:
            if self._wake is not None:
                self._wake.set()
            try:
                await self._task
            except Exception:
                pass
            self._task = None
        for _ in range(3):
            try:
                await self.flush()
                break
            except Exception:
                log.exception("final trace flush failed")
        if self.sink is not None:
            await asyncio.to_thread(self.sink.close)
        if self.exporter is not None:
            self.exporter.shutdown()
        if self.queue or self.dropped:
            log.warning("trace writer: %d unwritten, %d dropped", len(self.queue), self.dropped)
