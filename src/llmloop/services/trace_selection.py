"""Selecting traces by what happened to them: time range, deployment, status, guard flags and the
feedback they received (mean score, corrections, preferences, thumbs down).

Annotation queues and curation share this one query so a filter means the same thing in both.
Only primary traces are selected (shadow copies are evaluation material, not user traffic). It
reads; it never writes, and it does not aggregate (``services/monitoring.py`` does).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from llmloop.core.feedback import QueueFilter
from llmloop.errors import InvalidInputError
from llmloop.store import tables as t
from llmloop.store.registry import Row, Tx, _row

FLAG_ACTIONS = ("block", "flag", "redact")
SCORED_KINDS = ("thumbs", "score", "label")


def as_utc(at: datetime) -> datetime:
    """``at`` in UTC; a naive time is taken as UTC already (as the API documents).

    Times are compared in SQL, and SQLite stores them as UTC text without a zone: a bound
    ``10:00+02:00`` would be compared as the text ``10:00``, two hours off. Every time that
    reaches a query goes through here first.
    """
    try:
        return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+14:00 is in year 0 in UTC
        raise InvalidInputError(f"time out of range: {at.isoformat()}") from None


def normalized_feedback() -> sa.ColumnElement[Any]:
    """A feedback row's value on 0..1 (scores rescaled by their scale; thumbs are 0/1)."""
    f = t.feedback.c
    return sa.case(
        (
            sa.and_(f.scale_max.is_not(None), f.scale_max > f.scale_min),
            (f.value - f.scale_min) / (f.scale_max - f.scale_min),
        ),
        else_=f.value,
    )


def feedback_means() -> sa.Subquery:
    f = t.feedback.c
    return (
        sa.select(f.trace_id, sa.func.avg(normalized_feedback()).label("feedback_mean"))
        .where(f.kind.in_(SCORED_KINDS), f.value.is_not(None))
        .group_by(f.trace_id)
        .subquery("fbm")
    )


def flagged_condition() -> sa.ColumnElement[bool]:
    """Traces with a guard verdict that blocked, flagged or redacted (JSON text match)."""
    text = sa.cast(t.traces.c.guard_verdicts, sa.Text)
    patterns = [f'%"action": "{a}"%' for a in FLAG_ACTIONS]
    patterns += [f'%"action":"{a}"%' for a in FLAG_ACTIONS]
    return sa.or_(*[text.like(p) for p in patterns])


def _has_feedback(kind: str, value: float | None = None) -> sa.ColumnElement[bool]:
    f = t.feedback.c
    sub = sa.select(f.id).where(f.trace_id == t.traces.c.id, f.kind == kind)
    if value is not None:
        sub = sub.where(f.value == value)
    return sa.exists(sub)


def select_traces(
    tx: Tx, flt: QueueFilter, require: Collection[str] = (), newest_first: bool = False
) -> list[Row]:
    """Primary traces matching ``flt`` (and having every feedback kind in ``require``:
    'correction', 'preference', 'thumbs_down'), each with its ``feedback_mean`` (or None)."""
    tr = t.traces
    means = feedback_means()
    stmt = (
        sa.select(tr, means.c.feedback_mean)
        .select_from(tr.outerjoin(means, means.c.trace_id == tr.c.id))
        .where(tr.c.kind == "primary")
    )
    if flt.deployment:
        stmt = stmt.where(tr.c.deployment == flt.deployment)
    if flt.since:
        stmt = stmt.where(tr.c.at >= as_utc(flt.since))
    if flt.until:
        stmt = stmt.where(tr.c.at < as_utc(flt.until))
    if flt.status:
        stmt = stmt.where(tr.c.status == flt.status)
    if flt.min_feedback is not None:
        stmt = stmt.where(means.c.feedback_mean >= flt.min_feedback)
    if flt.max_feedback is not None:
        stmt = stmt.where(means.c.feedback_mean <= flt.max_feedback)
    if flt.flagged is True:
        stmt = stmt.where(flagged_condition())
    elif flt.flagged is False:
        stmt = stmt.where(sa.or_(tr.c.guard_verdicts.is_(None), sa.not_(flagged_condition())))
    for need in require:
        if need == "thumbs_down":
            stmt = stmt.where(_has_feedback("thumbs", 0.0))
        else:
            stmt = stmt.where(_has_feedback(need))
    stmt = stmt.order_by(tr.c.at.desc() if newest_first else tr.c.at.asc(), tr.c.id)
    stmt = stmt.limit(flt.limit)
    return [_row(r) for r in tx.conn.execute(stmt).mappings()]
