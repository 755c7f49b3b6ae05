"""The trace writer: an asynchronous, batched, bounded writer of gateway trace records.

``submit`` is a non-blocking append from the request path. A background task flushes every
``flush_ms`` or as soon as ``batch_size`` records wait, with one bulk insert per batch run in a
worker thread (the store is synchronous SQLAlchemy). That thread shares the GIL with the request
path, so a row is made cheaply: ``attributes`` are serialised with orjson (the dialect's
``json.dumps`` was the costliest part of a row). The queue is bounded: when it is full the
oldest unwritten record is dropped and counted, so a slow database never slows requests.
``aclose`` flushes everything left, so a clean shutdown loses nothing. Spans are exported through
the OpenTelemetry SDK when an exporter is configured. Nothing here decides what a trace holds.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import orjson
import sqlalchemy as sa

from llmloop.core.traces import TraceRecord
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
#: Rows converted and inserted per step of a batch (about a millisecond of the GIL).
_CHUNK = 32
#: The bulk insert of trace rows, ``attributes`` (always a dict, read through JSON paths only)
#: bound as orjson text; ``guard_verdicts`` keeps the dialect's serialiser, because analytics
#: match its text (``"action": "block"``) and ``None`` stays a JSON null.
_INSERT = t.traces.insert().values(attributes=sa.bindparam("attributes", type_=_DumpedJSON()))


class _MultiRowInsert:
    """SQLite's bulk path: one ``INSERT ... VALUES (...), (...)`` per chunk of rows.

    ``executemany`` steps the statement once per row, and the driver releases and re-takes the
    GIL around every step: at thousands of rows a second that hand-off, contended by the event
    loop's thread, cost more than the insert itself. One multi-row statement per chunk takes
    the GIL back once. Values go through the columns' own bind processors for this dialect, so
    the stored text is what SQLAlchemy would have written.
    """

    def __init__(self, dialect: sa.Dialect) -> None:
        columns = list(t.traces.columns)
        self.names = [c.name for c in columns]
        types = [_DumpedJSON() if c.name == "attributes" else c.type for c in columns]
        self.processors = [
            (i, proc) for i, typ in enumerate(types)
            if (proc := typ.dialect_impl(dialect).bind_processor(dialect)) is not None
        ]  # fmt: skip
        quote = dialect.identifier_preparer.quote
        self.head = f"INSERT INTO traces ({', '.join(quote(n) for n in self.names)}) VALUES "
        self.group = "(" + ", ".join("?" * len(self.names)) + ")"
        self.sql: dict[int, str] = {}

    def __call__(self, conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
        params: list[Any] = []
        for row in rows:
            values = [row[name] for name in self.names]
            for i, proc in self.processors:
                values[i] = proc(values[i])
            params.extend(values)
        sql = self.sql.get(len(rows))
        if sql is None:
            sql = self.sql[len(rows)] = self.head + ", ".join([self.group] * len(rows))
        conn.exec_driver_sql(sql, tuple(params))


def _dump_attributes(attrs: dict[str, Any]) -> str:
    try:
        return orjson.dumps(attrs, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # what orjson cannot encode (e.g. huge ints): the standard library's way
        return json.dumps(attrs, default=str)


class TraceTable:
    """Inserts trace records into the store's ``traces`` table, in chunks.

    Used by the writer's thread and by the writer process alike. ``skip_existing`` leaves out
    records whose id is already stored: after a writer process died, the batch it held may or
    may not have been committed, and writing it again must not fail on the primary key.
    """

    def __init__(self, store: Store, max_text: int) -> None:
        self.store = store
        self.max_text = max_text
        dialect = store.engine.dialect
        self._bulk = _MultiRowInsert(dialect) if dialect.name == "sqlite" else None

    def insert(self, batch: list[TraceRecord], skip_existing: bool = False) -> int:
        with self.store.transaction() as tx:
            if skip_existing:
                ids = [rec.id for rec in batch]
                stmt = sa.select(t.traces.c.id).where(t.traces.c.id.in_(ids))
                stored = set(tx.conn.execute(stmt).scalars())
                batch = [rec for rec in batch if rec.id not in stored]
            for i in range(0, len(batch), _CHUNK):
                rows = [rec.to_row(self.max_text) for rec in batch[i : i + _CHUNK]]
                for row in rows:
                    row["attributes"] = _dump_attributes(row["attributes"])
                if self._bulk is not None:
                    self._bulk(tx.conn, rows)
                else:
                    tx.conn.execute(_INSERT, rows)
                # Give the GIL back between chunks: the event loop's thread never waits for a
                # whole batch (or a 5 ms switch interval) behind this one.
                time.sleep(0)
        return len(batch)


class SpanExporter:
    """Turns trace records into OpenTelemetry spans (console or OTLP), off the request path."""

    def __init__(self, kind: str, endpoint: str = "") -> None:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        exporter: Any
        if kind == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            exporter = ConsoleSpanExporter()
        else:
            require_extra("opentelemetry.exporter.otlp", "otel", "OTLP span export")
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter(endpoint=endpoint) if endpoint else OTLPSpanExporter()
        self.provider = TracerProvider(resource=Resource.create({"service.name": "llmloop"}))
        self.provider.add_span_processor(BatchSpanProcessor(exporter))
        self.tracer = self.provider.get_tracer("llmloop.gateway")

    def export(self, records: list[TraceRecord]) -> None:
        for rec in records:
            start_ns = int(rec.at.timestamp() * 1e9)
            end_ns = start_ns + int(rec.latency_ms * 1e6)
            name = f"{rec.operation} {rec.request_model}"
            span = self.tracer.start_span(name, start_time=start_ns, attributes={
                k: v for k, v in rec.attributes().items()
                if isinstance(v, str | bool | int | float | list)
            })  # fmt: skip
            span.set_attribute("llmloop.trace_id", rec.id)
            span.end(end_time=end_ns)

    def shutdown(self) -> None:
        self.provider.shutdown()


class TraceSink(Protocol):
    """Somewhere else that writes batches (the writer process): blocking calls, run in a thread."""

    def open(self) -> None:
        """Get ready ahead of the first batch; raise :class:`SinkGone` when it cannot."""

    def write(self, batch: list[TraceRecord]) -> None:
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
        self.queue: deque[TraceRecord] = deque()
        self.dropped = 0
        self.written = 0
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._lock = threading.Lock()  # one batch at a time, whichever event loop flushes
        self._recovering = False  # a sink died: its last batch may be stored already
        self._sink_failures = 0

    def submit(self, record: TraceRecord) -> None:
        """Queue one record; never blocks and never raises."""
        if len(self.queue) >= self.max_queue:
            self.queue.popleft()
            self.dropped += 1
        self.queue.append(record)
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
        assert self._wake is not None
        if self.sink is not None:
            await asyncio.to_thread(self._open_sink)
        while not self._closing:
            try:
                await asyncio.wait_for(self._wake.wait(), self.flush_s)
            except TimeoutError:
                pass
            self._wake.clear()
            await self.flush()

    async def flush(self) -> int:
        """Write everything queued now, in batches; returns how many rows were written."""
        total = 0
        while self.queue:
            batch = [self.queue.popleft() for _ in range(min(self.batch_size, len(self.queue)))]
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

    def _write(self, batch: list[TraceRecord]) -> None:
        """One batch, in a worker thread: to the sink when there is one, else to the store."""
        with self._lock:
            if self.sink is not None:
                try:
                    self.sink.write(batch)  # the sink's process exports spans itself
                except SinkGone as exc:
                    self._sink_failures += 1
                    if self._sink_failures >= _SINK_RETRIES:
                        self.sink = None
                    log.warning("trace writer process gone (%s); this batch is written in this "
                                "process%s", exc, ", and all that follow" if self.sink is None
                                else "")  # fmt: skip
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
