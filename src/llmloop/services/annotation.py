"""Annotation queues: items drawn from a trace filter (or a dataset version's rows), handed to
annotators one at a time under a lease, labelled against the queue's schema, skipped, counted.

``next`` gives an annotator the item they already hold, else the first free one (pending, or
assigned under an expired lease). With ``ordering='uncertainty'`` items are served by priority,
highest first, from :func:`uncertainty` (documented there). Labels on trace items are written as
``label`` feedback in the same transaction. It does not judge traces itself.
"""

from __future__ import annotations

import builtins
import math
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from llmloop.core.feedback import (
    ITEM_STATUSES,
    FeedbackCreate,
    ItemPublic,
    LabelSchema,
    LabelSubmit,
    QueueCounts,
    QueueCreate,
    QueueFilter,
    QueuePublic,
)
from llmloop.core.ids import new_id
from llmloop.errors import ConflictError, InvalidInputError, NotFoundError
from llmloop.services.actors import Actor
from llmloop.services.datasets import DatasetService
from llmloop.services.feedback import insert_feedback
from llmloop.services.trace_selection import as_utc, select_traces
from llmloop.store import tables as t
from llmloop.store.registry import Row, Store, Tx, _row, utcnow

DEFAULT_LEASE_S = 900.0
# While an item is assigned its label column holds the lease's end (the table has no column of
# its own for it); labelling or skipping replaces it, and ItemPublic never shows it.
LEASE_KEY = "lease_until"
THRESHOLD = 0.5


def uncertainty(trace: Row) -> float:
    """How unsure the model (or its judges) was about a trace, 0..1; higher is served first.

    Signals, the largest wins: a judge score in ``attributes['llmloop.judge_score']`` against
    ``attributes['llmloop.judge_threshold']`` (default 0.5) and every guard verdict ``score``
    against 0.5, as ``1 - 2·|score - threshold|`` (closest to the line = most uncertain); and
    the mean token log-probability in ``attributes['llmloop.mean_logprob']`` as
    ``1 - exp(mean_logprob)``. A trace with none of them gets 0.
    """
    attrs: dict[str, Any] = trace.get("attributes") or {}
    found: list[float] = []
    judge = attrs.get("llmloop.judge_score")
    if isinstance(judge, int | float):
        threshold = attrs.get("llmloop.judge_threshold", THRESHOLD)
        found.append(1.0 - min(1.0, 2.0 * abs(float(judge) - float(threshold))))
    for verdict in trace.get("guard_verdicts") or []:
        score = verdict.get("score") if isinstance(verdict, dict) else None
        if isinstance(score, int | float):
            found.append(1.0 - min(1.0, 2.0 * abs(float(score) - THRESHOLD)))
    logprob = attrs.get("llmloop.mean_logprob")
    if isinstance(logprob, int | float) and logprob <= 0:
        found.append(1.0 - math.exp(float(logprob)))
    return max(found, default=0.0)


def check_label(schema: LabelSchema, label: LabelSubmit) -> None:
    """Refuse a label the schema does not allow (InvalidInputError)."""
    if label.text and not schema.free_text:
        raise InvalidInputError("this queue's schema allows no free text")
    if schema.kind == "categorical":
        if not isinstance(label.value, str) or label.value not in schema.choices:
            raise InvalidInputError(f"label must be one of {schema.choices}, not {label.value!r}")
        return
    assert schema.min is not None and schema.max is not None
    if isinstance(label.value, str) or not schema.min <= label.value <= schema.max:
        raise InvalidInputError(f"label must be a number in [{schema.min}, {schema.max}]")


class AnnotationService:
    def __init__(self, store: Store, datasets: DatasetService) -> None:
        self.store = store
        self.datasets = datasets

    def _queue(self, tx: Tx, name: str) -> Row:
        row = tx.get(t.annotation_queues, name=name)
        if row is None:
            raise NotFoundError(f"no annotation queue named '{name}'")
        return row

    def _public(self, tx: Tx, row: Row) -> QueuePublic:
        return QueuePublic(
            id=row["id"], name=row["name"], source=row["source"],
            filter=QueueFilter.model_validate(row["filter"]),
            label_schema=LabelSchema.model_validate(row["label_schema"]),
            ordering=row["ordering"], counts=self._counts(tx, row["id"]),
            created_at=row["created_at"], created_by=row["created_by"],
        )  # fmt: skip

    def _counts(self, tx: Tx, queue_id: str) -> QueueCounts:
        items = t.annotation_items
        stmt = (
            sa.select(items.c.status, sa.func.count())
            .where(items.c.queue_id == queue_id)
            .group_by(items.c.status)
        )
        found = {status: int(n) for status, n in tx.conn.execute(stmt)}
        return QueueCounts(**{s: found.get(s, 0) for s in ITEM_STATUSES})

    def create_queue(self, spec: QueueCreate, actor: Actor) -> QueuePublic:
        """Create a queue and fill it from its filter."""
        actor.require("editor")
        row: Row = {
            "id": queue_id(),
            "name": spec.name, "source": spec.source,
            "filter": spec.filter.model_dump(mode="json"),
            "label_schema": spec.label_schema.model_dump(mode="json"),
            "ordering": spec.ordering, "created_at": utcnow(), "created_by": actor.name,
        }  # fmt: skip
        candidates = self._candidates(spec.source, spec.filter)
        with self.store.transaction() as tx:
            if tx.get(t.annotation_queues, name=spec.name) is not None:
                raise ConflictError(f"an annotation queue named '{spec.name}' exists")
            tx.insert(t.annotation_queues, row)
            self._add_items(tx, row, candidates)
            tx.audit(
                actor.name, "annotation_queue.create", "annotation_queue", row["id"], None, row
            )
            return self._public(tx, row)

    def refill(self, name: str, actor: Actor) -> int:
        """Add the items that match the filter now and are not in the queue yet."""
        actor.require("editor")
        with self.store.read() as tx:
            queue = self._queue(tx, name)
        candidates = self._candidates(queue["source"], QueueFilter.model_validate(queue["filter"]))
        with self.store.transaction() as tx:
            return self._add_items(tx, queue, candidates)

    def _candidates(self, source: str, flt: QueueFilter) -> list[tuple[str, float]]:
        if source == "dataset":
            assert flt.dataset is not None
            version = self.datasets.get_version(flt.dataset, flt.version or "latest")
            count = min(version.row_count, flt.limit)
            return [(f"{version.id}#{i}", 0.0) for i in range(count)]
        with self.store.read() as tx:
            return [(r["id"], uncertainty(r)) for r in select_traces(tx, flt)]

    def _add_items(self, tx: Tx, queue: Row, candidates: list[tuple[str, float]]) -> int:
        items = t.annotation_items
        present = {
            ref
            for (ref,) in tx.conn.execute(
                sa.select(items.c.item_ref).where(items.c.queue_id == queue["id"])
            )
        }
        by_uncertainty = queue["ordering"] == "uncertainty"
        now = utcnow()
        rows = [
            {"queue_id": queue["id"], "item_ref": ref, "status": "pending", "assignee": None,
             "label": None, "priority": prio if by_uncertainty else 0.0, "updated_at": now}
            for ref, prio in candidates if ref not in present
        ]  # fmt: skip
        tx.insert_many(items, rows)
        return len(rows)

    def get_queue(self, name: str) -> QueuePublic:
        with self.store.read() as tx:
            return self._public(tx, self._queue(tx, name))

    def list_queues(self) -> builtins.list[QueuePublic]:
        with self.store.read() as tx:
            rows = tx.select(t.annotation_queues, order_by="name")
            return [self._public(tx, r) for r in rows]

    def next_item(
        self, name: str, annotator: str, lease_s: float = DEFAULT_LEASE_S
    ) -> ItemPublic | None:
        """The annotator's held item, else the next free one (leased to them for ``lease_s``);
        None when done. An item is free when pending, or when its holder's lease ran out: the
        lease the holder was given, not the one the caller asks for."""
        items = t.annotation_items
        with self.store.transaction() as tx:
            queue = self._queue(tx, name)
            now = utcnow()
            base = sa.select(items).where(items.c.queue_id == queue["id"])
            held = [_row(r) for r in tx.conn.execute(
                base.where(items.c.status == "assigned").order_by(items.c.id)
                .with_for_update(skip_locked=True)
            ).mappings()]  # fmt: skip
            found = next((r for r in held if r["assignee"] == annotator
                          and not _lapsed(r, now, lease_s)), None)  # fmt: skip
            if found is None:
                pending = base.where(items.c.status == "pending")
                pending = pending.order_by(items.c.priority.desc(), items.c.id).limit(1)
                first = (
                    tx.conn.execute(pending.with_for_update(skip_locked=True)).mappings().first()
                )
                free = [r for r in held if _lapsed(r, now, lease_s)]
                free += [_row(first)] if first is not None else []
                found = min(free, key=lambda r: (-r["priority"], r["id"]), default=None)
            if found is None:
                return None
            lease = {LEASE_KEY: (now + timedelta(seconds=lease_s)).isoformat()}
            values = {"status": "assigned", "assignee": annotator, "updated_at": now,
                      "label": lease}  # fmt: skip
            tx.update(items, {"id": found["id"]}, values)
            return self._item(tx, {**found, **values})

    def get_item(self, name: str, item_id: int) -> ItemPublic:
        """One item of the queue, whatever its state; reading it leases nothing."""
        with self.store.read() as tx:
            queue = self._queue(tx, name)
            row = tx.get(t.annotation_items, id=item_id, queue_id=queue["id"])
            if row is None:
                raise NotFoundError(f"queue '{name}' has no item {item_id}")
            return self._item(tx, row)

    def _item(self, tx: Tx, row: Row) -> ItemPublic:
        ref: str = row["item_ref"]
        content: dict[str, Any] = {}
        if "#" in ref:
            version_id, _, index = ref.partition("#")
            version = self.datasets.get_version_by_id(version_id)
            rows = self.datasets.read_rows(version)
            content = rows[int(index)] if int(index) < len(rows) else {}
        else:
            trace = tx.get(t.traces, id=ref)
            if trace is not None:
                content = {k: trace[k] for k in ("id", "deployment", "request_text",
                                                 "response_text", "status")}  # fmt: skip
        label = None if row["status"] == "assigned" else row["label"]  # the lease is internal
        return ItemPublic.model_validate({**row, "label": label, "content": content})

    def _held(self, tx: Tx, name: str, item_id: int, actor: Actor) -> tuple[Row, Row]:
        queue = self._queue(tx, name)
        item = tx.get(t.annotation_items, for_update=True, id=item_id, queue_id=queue["id"])
        if item is None:
            raise NotFoundError(f"queue '{name}' has no item {item_id}")
        if item["status"] in ("labelled", "skipped"):
            raise ConflictError(f"item {item_id} is already {item['status']}")
        if item["assignee"] not in (None, actor.name) and actor.role != "admin":
            raise ConflictError(f"item {item_id} is assigned to '{item['assignee']}'")
        return queue, item

    def label(self, name: str, item_id: int, label: LabelSubmit, actor: Actor) -> ItemPublic:
        """Record a label (validated by the schema); on a trace item it also becomes feedback."""
        actor.require("viewer")
        with self.store.transaction() as tx:
            queue, item = self._held(tx, name, item_id, actor)
            schema = LabelSchema.model_validate(queue["label_schema"])
            check_label(schema, label)
            values = {"status": "labelled", "assignee": actor.name,
                      "label": label.model_dump(mode="json"), "updated_at": utcnow()}  # fmt: skip
            tx.update(t.annotation_items, {"id": item_id}, values)
            if queue["source"] == "traces":
                insert_feedback(tx, item["item_ref"], _label_feedback(schema, label), actor)
            return self._item(tx, {**item, **values})

    def skip(self, name: str, item_id: int, actor: Actor) -> ItemPublic:
        actor.require("viewer")
        with self.store.transaction() as tx:
            _, item = self._held(tx, name, item_id, actor)
            values = {"status": "skipped", "assignee": actor.name, "label": None,
                      "updated_at": utcnow()}  # fmt: skip
            tx.update(t.annotation_items, {"id": item_id}, values)
            return self._item(tx, {**item, **values})

    def counts(self, name: str) -> QueueCounts:
        with self.store.read() as tx:
            return self._counts(tx, self._queue(tx, name)["id"])


def _lapsed(item: Row, now: datetime, lease_s: float) -> bool:
    """Whether an assigned item's lease ran out: at the time stored when it was leased, or (an
    item leased before leases were stored) ``lease_s`` after it was."""
    stored = (item.get("label") or {}).get(LEASE_KEY)
    if isinstance(stored, str):
        try:
            return as_utc(datetime.fromisoformat(stored)) <= now
        except ValueError:
            pass
    return as_utc(item["updated_at"]) + timedelta(seconds=lease_s) <= now


def _label_feedback(schema: LabelSchema, label: LabelSubmit) -> FeedbackCreate:
    """A categorical label is the comment (``choice`` or ``choice: note``); a numeric one is a
    value on the schema's scale."""
    if schema.kind == "categorical":
        comment = f"{label.value}: {label.text}" if label.text else str(label.value)
        return FeedbackCreate(kind="label", name=schema.name, comment=comment)
    return FeedbackCreate(
        kind="label", name=schema.name, value=float(label.value),
        scale_min=schema.min, scale_max=schema.max, comment=label.text,
    )  # fmt: skip


def queue_id() -> str:
    """A new queue id, ``aq_`` + the sortable id format of :func:`llmloop.core.ids.new_id`."""
    # core/ids.py has no queue prefix (another team's file); the lead may add "aq" there.
    return "aq_" + new_id("feedback").partition("_")[2]
