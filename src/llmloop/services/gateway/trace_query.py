"""Reading stored traces back (``/api/traces``, the dashboard, tests, evaluation of shadow answers).

Only reads; writing is the batched :class:`~llmloop.services.gateway.tracing.TraceWriter`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from llmloop.core.traces import TracePublic
from llmloop.errors import NotFoundError
from llmloop.store import tables as t
from llmloop.store.registry import Store, _row


class TraceQuery:
    def __init__(self, store: Store) -> None:
        self.store = store

    def list(
        self,
        deployment: str | None = None,
        parent_id: str | None = None,
        limit: int = 100,
        *,
        status: str | None = None,
        user: str | None = None,
        key_id: str | None = None,
        kind: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        offset: int = 0,
    ) -> list[TracePublic]:
        """Newest first, optionally for one deployment or one primary's shadow copies.

        The keyword filters match exactly (``status``, ``user``, ``key_id``, ``kind``); ``since``
        is inclusive and ``until`` exclusive. ``offset`` skips that many of the newest matches.
        """
        tr = t.traces.c
        equal: dict[str, Any] = {
            "deployment": deployment,
            "parent_id": parent_id,
            "status": status,
            "user": user,
            "key_id": key_id,
            "kind": kind,
        }
        conditions = [tr[name] == value for name, value in equal.items() if value]
        if since is not None:
            conditions.append(tr.at >= _utc(since))
        if until is not None:
            conditions.append(tr.at < _utc(until))
        # the id breaks ties between traces of the same instant, so pages never overlap
        stmt = sa.select(t.traces).where(*conditions).order_by(tr.at.desc(), tr.id.desc())
        stmt = stmt.limit(limit).offset(max(0, offset))
        with self.store.read() as tx:
            rows = [_row(r) for r in tx.conn.execute(stmt).mappings()]
        return [TracePublic.model_validate(r) for r in rows]

    def get(self, trace_id: str) -> TracePublic:
        with self.store.read() as tx:
            row = tx.get(t.traces, id=trace_id)
        if row is None:
            raise NotFoundError(f"no trace with id '{trace_id}'")
        return TracePublic.model_validate(row)

    def count(self, **where: object) -> int:
        with self.store.read() as tx:
            return tx.count(t.traces, **where)


def _utc(value: datetime) -> datetime:
    """``value`` in UTC (naive: taken as UTC): SQLite compares the stored text, which is UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
