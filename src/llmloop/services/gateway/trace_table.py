"""Trace rows: a trace record as the values of a ``traces`` row, their bulk insert, span export.

Used by the writer in the server process (``tracing.py``) and by the writer process
(``trace_process.py``) alike. A row is a tuple of plain values in the table's column order,
built when a record is submitted (see :meth:`TraceTable.row`), with the time as microseconds
since the epoch: what the server does per request is kept to reading the record's fields,
and the conversions a database needs happen where rows are inserted, in the writer process.
Nothing here decides what a trace holds or when rows are written.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import sqlalchemy as sa

from llmloop.core.traces import TracePublic, TraceRecord
from llmloop.errors import require_extra
from llmloop.store import tables as t
from llmloop.store.registry import Store

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
#: ``YYYY-MM-DD HH:MM:SS.%06d`` of the last few whole seconds seen (see :func:`sqlite_times`).
_SECONDS: dict[int, str] = {}


def epoch_us(at: datetime) -> int:
    """``at`` as whole microseconds since the epoch (a time without zone is taken as UTC).

    How a row carries its time: an int is what ``marshal`` takes, and the subtraction costs
    the request path a fifth of what formatting the text did.
    """
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return (at - _EPOCH) // _MICROSECOND


def from_epoch_us(micros: int) -> datetime:
    """The UTC time ``micros`` microseconds after the epoch (the inverse of :func:`epoch_us`)."""
    return _EPOCH + timedelta(microseconds=micros)


def sqlite_times(column: tuple[int, ...] | list[int]) -> list[str]:
    """Row times (microseconds since the epoch) as SQLAlchemy stores a DATETIME on SQLite:
    ``YYYY-MM-DD HH:MM:SS.ffffff`` in UTC, without offset.

    Times of the same second share the formatted seconds: formatting the whole time costs as
    much as the rest of a row's conversion.
    """
    seconds = _SECONDS
    out = []
    for micros in column:
        second, fraction = divmod(micros, 1_000_000)
        form = seconds.get(second)
        if form is None:
            if len(seconds) > 64:
                seconds.clear()
            head = from_epoch_us(second * 1_000_000).strftime("%Y-%m-%d %H:%M:%S")
            form = seconds[second] = head + ".%06d"
        out.append(form % fraction)
    return out


class _DumpedJSON(sa.types.TypeDecorator[Any]):
    """A JSON column whose values arrive already serialised (by orjson, several times faster
    than the dialect's ``json.dumps``); the database still sees a JSON value."""

    impl = sa.JSON
    cache_ok = True

    def bind_processor(self, dialect: sa.Dialect) -> None:  # type: ignore[override]
        return None


#: Rows inserted per step of a batch (about a millisecond of the GIL).
_CHUNK = 128
#: One trace as the values of a ``traces`` row, in column order (see ``TraceTable.row``).
TraceRow = tuple[Any, ...]
_COLUMNS = [c.name for c in t.traces.columns]
_ID, _AT = _COLUMNS.index("id"), _COLUMNS.index("at")
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


def _stored_default(column: sa.Column[Any]) -> tuple[bool, Any]:
    """Whether an insert may leave ``column`` out, and the value the table then stores."""
    default = column.server_default
    if default is None:
        return column.nullable is True, None
    arg = getattr(default, "arg", None)
    if isinstance(arg, sa.sql.elements.False_):
        return True, False
    if isinstance(arg, str):
        return True, column.type.python_type(arg)  # "0" -> 0 or 0.0, "" -> ""
    return False, None


class _SQLiteBulk:
    """SQLite's bulk path: one ``INSERT ... VALUES (...), (...)`` per chunk, on the driver.

    ``executemany`` steps the statement once per row, and the driver releases and re-takes the
    GIL around every step: at thousands of rows a second that hand-off, contended by the event
    loop's thread, cost more than the insert itself. One multi-row statement per chunk takes
    the GIL back once.

    Binding a value costs SQLite about as much as storing it, so each chunk binds as few as it
    can: a column that holds its default in every row of the chunk (no error, no parent, no
    user ... as most requests) is left out, and the table stores the same default; a column
    that holds one other value in every row (the deployment, the model, the status ...) is
    bound once and named by every row (``?N``). Parameters go column by column, each a slice
    of the chunk's columns, with no per-row work in Python. Chunks have sizes of powers of two,
    so that a few statements, compiled once, serve every batch (compiling a statement for an
    odd size cost a tenth of the insert). A test keeps the stored rows equal to SQLAlchemy's.
    """

    def __init__(self) -> None:
        self.defaults: dict[int, Any] = {
            i: value
            for i, column in enumerate(t.traces.columns)
            for omittable, value in [_stored_default(column)]
            if omittable
        }
        self.sql: dict[tuple[tuple[int, ...], tuple[int, ...], int], str] = {}

    def _statement(self, shared: tuple[int, ...], varying: tuple[int, ...], n: int) -> str:
        """The insert of ``n`` rows: parameters 1.. are the ``shared`` columns' values, then
        each ``varying`` column's ``n`` values in turn."""
        key = (shared, varying, n)
        sql = self.sql.get(key)
        if sql is None:
            if len(self.sql) > 256:
                self.sql.clear()
            names = {i: f"?{k + 1}" for k, i in enumerate(shared)}
            base = len(shared) + 1
            kept = sorted(shared + varying)
            groups = []
            for r in range(n):
                for k, i in enumerate(varying):
                    names[i] = f"?{base + k * n + r}"
                groups.append("(" + ", ".join(names[i] for i in kept) + ")")
            quoted = ", ".join(f'"{_COLUMNS[i]}"' for i in kept)
            sql = self.sql[key] = f"INSERT INTO traces ({quoted}) VALUES " + ", ".join(groups)
        return sql

    def __call__(self, conn: sa.Connection, columns: list[Any], lo: int, hi: int) -> None:
        """Insert rows ``lo:hi`` of a batch given as ``columns`` (the values of each column)."""
        n = hi - lo
        defaults = self.defaults
        shared: list[int] = []
        varying: list[int] = []
        params: list[Any] = []
        for i, column in enumerate(columns):
            part = column[lo:hi]
            first = part[0]
            if part[-1] != first or part.count(first) != n:  # (most differ in the last row)
                varying.append(i)
            elif i not in defaults or defaults[i] != first:
                shared.append(i)
                params.append(first)
        for i in varying:
            params += columns[i][lo:hi]
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(self._statement(tuple(shared), tuple(varying), n), params)
        finally:
            cursor.close()


def _chunks(n: int) -> list[tuple[int, int]]:
    """``(lo, hi)`` of the chunks of a batch of ``n`` rows: ``_CHUNK`` rows each, then what is
    left in powers of two."""
    bounds = []
    lo = 0
    size = _CHUNK
    while lo < n:
        while size > n - lo:
            size //= 2
        bounds.append((lo, lo + size))
        lo += size
    return bounds


class TraceTable:
    """Trace records as rows of the store's ``traces`` table, and their bulk insert.

    ``row`` turns a record into a tuple of plain values as soon as it is submitted: a queued
    tuple of strings and numbers is left alone by the garbage collector, where thousands of
    queued record objects (each with its dicts) were rescanned by every collection. It runs on
    the server's event loop for every request, so it only reads fields: texts are cut only when
    they are too long, the attributes and guard verdicts are encoded only when there are any
    (rare), and the time stays a number. ``insert`` (the writer process, usually) gives each
    database its values: on SQLite the text SQLAlchemy would bind (DATETIME as ``YYYY-MM-DD
    HH:MM:SS.ffffff`` without offset, JSON as text, ``None`` as ``'null'``; a test keeps the
    two paths equal), straight to the driver; elsewhere datetimes, through SQLAlchemy.
    ``skip_existing`` leaves out rows whose id is already stored: after a writer process died,
    the batch it held may or may not have been committed, and writing it again must not fail
    on the primary key.
    """

    def __init__(self, store: Store, max_text: int, share_gil: bool = True) -> None:
        self.store = store
        self.max_text = max_text
        self.share_gil = share_gil  # another thread (the event loop's) needs the GIL too
        self.sqlite = store.engine.dialect.name == "sqlite"
        self._bulk = _SQLiteBulk() if self.sqlite else None

    def row(self, rec: TraceRecord) -> TraceRow:
        cut = self.max_text
        at = rec.at
        target, user, extra, verdicts = rec.target, rec.user, rec.extra, rec.guard_verdicts
        text_in, text_out = rec.request_text, rec.response_text
        return (
            rec.id,
            (at - _EPOCH) // _MICROSECOND if at.tzinfo is UTC else epoch_us(at),
            rec.kind,
            rec.parent_id,
            rec.operation,
            rec.deployment,
            rec.request_model,
            rec.response_model,
            rec.model_version_id,
            target if len(target) <= 256 else target[:256],
            rec.key_id,
            (user if len(user) <= 256 else user[:256]) if user else None,
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
            _dump_attributes(extra) if extra else "{}",  # the other attributes are columns
            text_in if len(text_in) <= cut else text_in[:cut],
            text_out if len(text_out) <= cut else text_out[:cut],
        )

    def insert(self, rows: list[TraceRow], skip_existing: bool = False) -> int:
        """Store ``rows`` in one transaction; returns how many were new. A row whose id is
        stored already is the same trace again (a batch written by a writer process that died
        before it could say so, then queued again): it is left out, never an error."""
        try:
            return self._insert(rows, skip_existing)
        except (sa.exc.IntegrityError, sqlite3.IntegrityError):
            if skip_existing:
                raise
            return self._insert(rows, skip_existing=True)

    def _insert(self, rows: list[TraceRow], skip_existing: bool) -> int:
        with self.store.transaction() as tx:
            if skip_existing:
                ids = [row[_ID] for row in rows]
                stmt = sa.select(t.traces.c.id).where(t.traces.c.id.in_(ids))
                stored = set(tx.conn.execute(stmt).scalars())
                rows = [row for row in rows if row[_ID] not in stored]
            if not rows:
                return 0
            columns: list[Any] = list(zip(*rows, strict=True))
            if self._bulk is not None:
                columns[_AT] = sqlite_times(columns[_AT])
            else:
                columns[_AT] = [from_epoch_us(micros) for micros in columns[_AT]]
            for lo, hi in _chunks(len(rows)):
                if self._bulk is not None:
                    self._bulk(tx.conn, columns, lo, hi)
                else:
                    chunk = zip(*(column[lo:hi] for column in columns), strict=True)
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
            fields["at"] = from_epoch_us(fields["at"])
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
