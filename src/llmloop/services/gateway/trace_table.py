"""Trace rows: a trace record as the values of a ``traces`` row, their bulk insert, span export.

Used by the writer in the server process (``tracing.py``) and by the writer process
(``trace_process.py``) alike. A row is a tuple of plain values, built once when a record is
submitted (see :meth:`TraceTable.row`); nothing here decides what a trace holds or when rows
are written.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from datetime import UTC, datetime
from itertools import chain
from operator import itemgetter
from typing import Any

import orjson
import sqlalchemy as sa

from llmloop.core.traces import TracePublic, TraceRecord
from llmloop.errors import require_extra
from llmloop.store import tables as t
from llmloop.store.registry import Store

#: ``YYYY-MM-DD HH:MM:SS`` of the last few whole seconds seen (see :func:`sqlite_time`).
_SECONDS: dict[int, str] = {}


def sqlite_time(at: datetime) -> str:
    """``at`` as SQLAlchemy stores a DATETIME on SQLite: ``YYYY-MM-DD HH:MM:SS.ffffff``.

    Traces of the same second share the formatted seconds (``isoformat`` took as long as the
    rest of a row); a time that is not in UTC takes the plain way.
    """
    if at.tzinfo is not UTC:
        return at.isoformat(" ", "microseconds")[:26]
    second = int(at.timestamp())
    head = _SECONDS.get(second)
    if head is None:
        if len(_SECONDS) > 64:
            _SECONDS.clear()
        head = _SECONDS[second] = at.strftime("%Y-%m-%d %H:%M:%S")
    return f"{head}.{at.microsecond:06d}"


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
    the GIL back once; the rows are already the values SQLAlchemy would bind.

    A column that holds its default in every row of a chunk (no error, no parent, no user,
    no cache hit ... as most requests) is left out of the statement, and the table stores
    the same default: SQLite's insert costs about as much per bound value as per row, so a
    typical chunk costs half as much. A test keeps the stored rows equal to SQLAlchemy's.
    """

    def __init__(self) -> None:
        self.defaults = [
            (i, value)
            for i, column in enumerate(t.traces.columns)
            for omittable, value in [_stored_default(column)]
            if omittable
        ]
        self.sql: dict[tuple[tuple[int, ...], int], str] = {}

    def _statement(self, kept: tuple[int, ...], n: int) -> str:
        sql = self.sql.get((kept, n))
        if sql is None:
            if len(self.sql) > 256:
                self.sql.clear()
            quoted = ", ".join(f'"{_COLUMNS[i]}"' for i in kept)
            group = "(" + ", ".join("?" * len(kept)) + ")"
            sql = f"INSERT INTO traces ({quoted}) VALUES " + ", ".join([group] * n)
            self.sql[(kept, n)] = sql
        return sql

    def __call__(self, conn: sa.Connection, rows: list[TraceRow]) -> None:
        columns = list(zip(*rows, strict=True))
        n = len(rows)
        left_out = {i for i, value in self.defaults if columns[i].count(value) == n}
        kept = tuple(i for i in range(len(_COLUMNS)) if i not in left_out)  # id and at, at least
        params = list(chain.from_iterable(map(itemgetter(*kept), rows)))
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(self._statement(kept, n), params)
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
            sqlite_time(rec.at) if self.sqlite else rec.at,
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
