"""Reading stored traces back (``/api/traces``, tests, evaluation of shadow answers).

Only reads; writing is the batched :class:`~llmloop.services.gateway.tracing.TraceWriter`.
"""

from __future__ import annotations

from llmloop.core.traces import TracePublic
from llmloop.errors import NotFoundError
from llmloop.store import tables as t
from llmloop.store.registry import Store


class TraceQuery:
    def __init__(self, store: Store) -> None:
        self.store = store

    def list(
        self, deployment: str | None = None, parent_id: str | None = None, limit: int = 100
    ) -> list[TracePublic]:
        """Newest first, optionally for one deployment or one primary's shadow copies."""
        where: dict[str, object] = {}
        if deployment:
            where["deployment"] = deployment
        if parent_id:
            where["parent_id"] = parent_id
        with self.store.read() as tx:
            rows = tx.select(t.traces, where, order_by="at", descending=True, limit=limit)
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
