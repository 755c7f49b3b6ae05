"""Feedback on traces: thumbs, scores on named scales, comments, corrections and preferences.

Every piece is one append-only row of ``feedback`` tied to an existing trace (an unknown trace
id is a NotFoundError). Annotation labels on trace items arrive here too, through
:func:`insert_feedback`, in the labelling transaction. Aggregating feedback is the monitoring
service's job; turning it into training data is curation's.
"""

from __future__ import annotations

import builtins
import math

from llmloop.core.feedback import FeedbackCreate, FeedbackPublic
from llmloop.core.ids import new_id
from llmloop.errors import InvalidInputError, NotFoundError
from llmloop.services.actors import Actor
from llmloop.store import tables as t
from llmloop.store.registry import Row, Store, Tx, utcnow


def insert_feedback(tx: Tx, trace_id: str, spec: FeedbackCreate, actor: Actor) -> Row:
    """Write one feedback row for ``trace_id`` inside ``tx``; the trace must exist."""
    check_scored(spec)
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


def check_scored(spec: FeedbackCreate) -> None:
    """Refuse numbers that would skew mean feedback (which is on 0..1): NaN or infinity (JSON
    has neither: they would come back null), a scale on thumbs (up would count as less than 1),
    a label value off its scale, or off 0..1 when it has none."""
    for field in ("value", "scale_min", "scale_max"):
        number = getattr(spec, field)
        if number is not None and not math.isfinite(number):
            raise InvalidInputError(f"{field} must be a finite number")
    has_scale = spec.scale_min is not None or spec.scale_max is not None
    if spec.kind == "thumbs" and has_scale:
        raise InvalidInputError("thumbs feedback is 1 or 0 and has no scale_min/scale_max")
    if spec.kind == "label" and spec.value is not None:
        lo, hi = (spec.scale_min, spec.scale_max) if has_scale else (0.0, 1.0)
        if lo is None or hi is None or not lo < hi:
            raise InvalidInputError("a label's scale needs scale_min < scale_max")
        if not lo <= spec.value <= hi:
            raise InvalidInputError(f"label value {spec.value:g} is outside {lo:g}-{hi:g}")


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
