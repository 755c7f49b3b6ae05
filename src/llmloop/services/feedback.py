"""Feedback on traces: thumbs, scores on named scales, comments, corrections and preferences.

Every piece is one append-only row of ``feedback`` tied to an existing trace (an unknown trace
id is a NotFoundError). Annotation labels on trace items arrive here too, through
:func:`insert_feedback`, in the labelling transaction. Aggregating feedback is the monitoring
service's job; turning it into training data is curation's.
"""

from __future__ import annotations

import builtins

from llmloop.core.feedback import FeedbackCreate, FeedbackPublic
from llmloop.core.ids import new_id
from llmloop.errors import NotFoundError
from llmloop.services.actors import Actor
from llmloop.store import tables as t
from llmloop.store.registry import Row, Store, Tx, utcnow


def insert_feedback(tx: Tx, trace_id: str, spec: FeedbackCreate, actor: Actor) -> Row:
    """Write one feedback row for ``trace_id`` inside ``tx``; the trace must exist."""
    if tx.get(t.traces, id=trace_id) is None:
        raise NotFoundError(f"no trace with id '{trace_id}'")
    row: Row = {
        "id": new_id("feedback"),
        "trace_id": trace_id,
        "kind": spec.kind,
        "name": spec.name,
        "value": spec.value,
        "scale_min": spec.scale_min,
        "scale_max": spec.scale_max,
        "comment": spec.comment,
        "correction": spec.correction,
        "alternative": spec.alternative,
        "preferred": spec.preferred,
        "user": spec.user or actor.name,
        "created_at": utcnow(),
        "created_by": actor.name,
    }
    tx.insert(t.feedback, row)
    return row


class FeedbackService:
    def __init__(self, store: Store) -> None:
        self.store = store

    def add(self, trace_id: str, spec: FeedbackCreate, actor: Actor) -> FeedbackPublic:
        """Attach feedback to a trace (any role may give feedback, a viewer included)."""
        actor.require("viewer")
        with self.store.transaction() as tx:
            row = insert_feedback(tx, trace_id, spec, actor)
        return FeedbackPublic.model_validate(row)

    def list(self, trace_id: str | None = None, limit: int = 100) -> builtins.list[FeedbackPublic]:
        """Feedback on one trace (oldest first), or the newest of all traces."""
        with self.store.read() as tx:
            if trace_id is not None:
                if tx.get(t.traces, id=trace_id) is None:
                    raise NotFoundError(f"no trace with id '{trace_id}'")
                rows = tx.select(t.feedback, {"trace_id": trace_id}, order_by="created_at")
            else:
                rows = tx.select(t.feedback, order_by="created_at", descending=True, limit=limit)
        return [FeedbackPublic.model_validate(r) for r in rows]
