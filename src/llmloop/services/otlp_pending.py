"""GenAI content from OTLP log records, held by span until the span's trace row takes it.

An app's SDK exports spans and log records on their own schedules (a BatchSpanProcessor every
5 s, a BatchLogRecordProcessor every second, each sooner when its batch fills), so a call's
log records reach the server before its span or after it, in one batch or several, from any
server process. Both ways meet in the store:

- Every content record is kept in ``otlp_log_events`` under its span's key (the sending key,
  trace id and span id; see ``otlp_mapping.span_key``). Its id is a digest of the record, so a
  batch sent again (an exporter's retry) adds nothing.
- Every GenAI span ingested notes its trace row in ``otlp_log_spans`` (:meth:`claim`, before its
  row is queued), and takes the records already held for it: the row is written with them.
- Records that arrive after their span find its row there and are merged into the stored row
  (:meth:`apply`). A row still queued in a trace writer is not stored yet: its records wait,
  unmerged, and the next ingest (of either kind) merges them once the row is stored
  (:meth:`sweep`).

A span's content is always made again from all of its records, so records arriving in several
batches add up and a record merged twice changes nothing. Records and notes are held for
:data:`HOLD` (records whose span never comes, e.g. sampled out, expire), and at most
:data:`MAX_EVENTS` records and :data:`MAX_SPANS` notes are kept (the oldest go first); expiry
runs at most once a minute per process. Not here: decoding (``otlp_logs.py``), what the content
means for a row (``otlp_mapping.py``).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import sqlalchemy as sa

from llmloop.services.otlp_logs import LogEvent, messages_of
from llmloop.services.otlp_mapping import merge_log_content, span_key
from llmloop.store import tables as t
from llmloop.store.registry import Store, Tx

HOLD = timedelta(minutes=15)
MAX_EVENTS = 100_000
MAX_SPANS = 200_000
_EXPIRE_EVERY_S = 60.0
_SWEEP_EVERY_S = 1.0
_SWEEP_LIMIT = 200

Content = list[tuple[str, dict[str, Any]]]


class PendingContent:
    """The held log records of GenAI spans, and the rows their spans became."""

    def __init__(self, store: Store, max_text: int) -> None:
        self.store = store
        self.max_text = max_text
        self._expired_at = 0.0
        self._swept_at = 0.0

    def hold(self, events: Sequence[LogEvent], key_id: str | None) -> tuple[dict[str, str], int]:
        """Keep ``events``; returns the rows known for their spans (span key -> trace row id)
        and how many events were new (the rest were held already: a resend)."""
        if not events:
            return {}, 0
        rows = []
        now = datetime.now(UTC)
        for position, event in enumerate(events):
            key = span_key(key_id, event.trace_id, event.span_id)
            assert key is not None  # decode_logs rejected the records without ids
            content = _jsonable(event.content)
            # a record is its span, name, time and content, however batched; records without
            # a time are told apart by their place in the batch (a resend keeps it)
            seed = [key, event.name, event.time_ns or -position, content]
            digest = hashlib.blake2b(json.dumps(seed, default=str).encode(), digest_size=16)
            rows.append({"id": digest.hexdigest(), "span_key": key,
                         "at_ns": min(event.time_ns, 2**63 - 1),
                         "position": position, "name": event.name[:128], "content": content,
                         "received_at": now})  # fmt: skip
        with self.store.transaction() as tx:
            held = {r["id"] for r in tx.select_in(t.otlp_log_events, "id", [r["id"] for r in rows])}
            fresh = [r for r in rows if r["id"] not in held]
            _insert_new(tx, t.otlp_log_events, fresh)
            keys = sorted({r["span_key"] for r in rows})
            noted = tx.select_in(t.otlp_log_spans, "span_key", keys)
        known = {r["span_key"]: r["trace_row_id"] for r in noted}
        return known, len(fresh)

    def claim(self, rows: dict[str, str]) -> dict[str, Content]:
        """Note the trace row each span key (of spans being ingested) becomes, and the content
        held for those spans, by key, oldest first."""
        if not rows:
            return {}
        now = datetime.now(UTC)
        with self.store.transaction() as tx:
            _insert_new(tx, t.otlp_log_spans, [
                {"span_key": k, "trace_row_id": r, "seen_at": now} for k, r in rows.items()
            ])  # fmt: skip
            return _content(tx, list(rows))

    def apply(self, rows: dict[str, str]) -> set[str]:
        """Merge the content held for each span key into its stored trace row; returns the
        keys whose row is not stored yet (queued in a writer: :meth:`sweep` merges later)."""
        missing = set()
        with self.store.transaction() as tx:
            content = _content(tx, list(rows))
            for key, row_id in rows.items():
                if key in content and not self._merge(tx, row_id, content[key]):
                    missing.add(key)
                    continue
                events = t.otlp_log_events
                tx.conn.execute(
                    events.update()
                    .where(events.c.span_key == key, events.c.trace_row_id.is_(None))
                    .values(trace_row_id=row_id)
                )
        return missing

    def _merge(self, tx: Tx, row_id: str, content: Content) -> bool:
        tr = t.traces
        row = tx.conn.execute(
            sa.select(tr.c.operation, tr.c.finish_reason, tr.c.attributes).where(tr.c.id == row_id)
        ).mappings().first()  # fmt: skip
        if row is None:
            return False
        values = merge_log_content(dict(row), messages_of(content), self.max_text)
        if values is not None:
            tx.conn.execute(tr.update().where(tr.c.id == row_id).values(**values))
        return True

    def sweep(self) -> int:
        """Merge held records whose span's row has been stored since they came (at most once
        a second, a few hundred spans at a time); returns how many spans were merged."""
        if time.monotonic() - self._swept_at < _SWEEP_EVERY_S:
            return 0
        self._swept_at = time.monotonic()
        e, s, tr = t.otlp_log_events.c, t.otlp_log_spans.c, t.traces.c
        ready = (
            sa.select(s.span_key, s.trace_row_id).distinct()
            .join_from(t.otlp_log_spans, t.otlp_log_events, e.span_key == s.span_key)
            .join(t.traces, tr.id == s.trace_row_id)
            .where(e.trace_row_id.is_(None)).limit(_SWEEP_LIMIT)
        )  # fmt: skip
        with self.store.read() as tx:
            rows = {k: r for k, r in tx.conn.execute(ready)}
        return len(rows) - len(self.apply(rows)) if rows else 0

    def expire(self, force: bool = False) -> None:
        """Forget records and notes past :data:`HOLD`, and the oldest beyond the bounds (at
        most once a minute unless ``force``)."""
        if not force and time.monotonic() - self._expired_at < _EXPIRE_EVERY_S:
            return
        self._expired_at = time.monotonic()
        cutoff = datetime.now(UTC) - HOLD
        with self.store.transaction() as tx:
            for table, column, bound in ((t.otlp_log_events, "received_at", MAX_EVENTS),
                                         (t.otlp_log_spans, "seen_at", MAX_SPANS)):  # fmt: skip
                when = table.c[column]
                tx.conn.execute(table.delete().where(when < cutoff))
                key = table.primary_key.columns.values()[0]
                beyond = sa.select(key).order_by(when.desc(), key.desc()).offset(bound)
                if tx.conn.execute(beyond.limit(1)).first() is not None:
                    tx.conn.execute(table.delete().where(key.in_(beyond.scalar_subquery())))


def _content(tx: Tx, keys: Iterable[str]) -> dict[str, Content]:
    e = t.otlp_log_events.c
    query = (
        sa.select(e.span_key, e.name, e.content)
        .where(e.span_key.in_(list(keys)))
        .order_by(e.span_key, e.at_ns, e.received_at, e.position)
    )
    found: dict[str, Content] = {}
    for key, name, content in tx.conn.execute(query):
        found.setdefault(key, []).append((name, content))
    return found


def _jsonable(value: Any) -> Any:
    """``value`` as JSON both databases store (NaN and infinities become null)."""
    try:
        return orjson.loads(orjson.dumps(value, default=str))
    except TypeError:  # an integer past 64 bits: the standard library's way, as text
        return json.loads(json.dumps(value, default=str), parse_int=str)


def _insert_new(tx: Tx, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows``, leaving out any whose key another process inserted meanwhile."""
    if not rows:
        return
    if tx.conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        tx.conn.execute(pg_insert(table).on_conflict_do_nothing(), rows)
    elif tx.conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        tx.conn.execute(sqlite_insert(table).on_conflict_do_nothing(), rows)
    else:
        tx.conn.execute(table.insert(), rows)
