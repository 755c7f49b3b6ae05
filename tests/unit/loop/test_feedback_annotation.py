"""Feedback on traces and annotation queues: round trip, validation, assignment, leases, counts,
uncertainty ordering, labels becoming feedback."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError
from tests.unit.loop.loop_data import NOW, add_traces

from llmloop.core.feedback import FeedbackCreate, LabelSchema, LabelSubmit, QueueCreate, QueueFilter
from llmloop.errors import ConflictError, InvalidInputError, NotFoundError
from llmloop.services.actors import Actor, local_actor
from llmloop.services.annotation import uncertainty
from llmloop.services.container import Container

ME = local_actor("ann")


def test_feedback_round_trip(container: Container) -> None:
    (tid,) = add_traces(container, [{"request_text": "user: hi", "response_text": "hello"}])
    fb = container.feedback
    fb.add(tid, FeedbackCreate(kind="thumbs", value=0), ME)
    fb.add(
        tid, FeedbackCreate(kind="score", name="helpfulness", value=4, scale_min=1, scale_max=5), ME
    )
    fb.add(tid, FeedbackCreate(kind="correction", correction="Hello there!"), ME)
    fb.add(tid, FeedbackCreate(kind="preference", preferred="b", alternative="Hey"), ME)
    got = fb.list(tid)
    assert [f.kind for f in got] == ["thumbs", "score", "correction", "preference"]
    assert got[1].scale_max == 5 and got[1].value == 4
    assert got[2].correction == "Hello there!" and got[3].preferred == "b"
    assert got[0].id.startswith("fb_") and got[0].user == "ann"


def test_feedback_rules(container: Container) -> None:
    with pytest.raises(NotFoundError):
        container.feedback.add("tr_NOPE", FeedbackCreate(kind="thumbs", value=1), ME)
    for bad in (
        {"kind": "thumbs", "value": 3},
        {"kind": "score", "value": 9, "name": "x", "scale_min": 1, "scale_max": 5},
        {"kind": "score", "value": 2},
        {"kind": "preference", "preferred": "a"},
        {"kind": "comment", "comment": " "},
    ):
        with pytest.raises(ValidationError):
            FeedbackCreate.model_validate(bad)


def _queue(c: Container, name: str = "q", **kw: object) -> None:
    schema = LabelSchema(kind="categorical", name="quality", choices=["good", "bad"])
    c.annotation.create_queue(QueueCreate(name=name, label_schema=schema, **kw), ME)  # type: ignore[arg-type]


def test_queue_assignment_and_counts(container: Container) -> None:
    ids = add_traces(container, [{"at": NOW + timedelta(seconds=i)} for i in range(4)])
    add_traces(container, [{"deployment": "other"}])
    _queue(container, filter=QueueFilter(deployment="dep"))
    ann = container.annotation
    assert ann.counts("q").pending == 4
    first = ann.next_item("q", "alice")
    assert first is not None and first.item_ref == ids[0] and first.content["deployment"] == "dep"
    assert ann.next_item("q", "alice").id == first.id  # type: ignore[union-attr]  # held item again
    second = ann.next_item("q", "bob")
    assert second is not None and second.id != first.id
    alice = Actor(name="alice", role="viewer")
    with pytest.raises(InvalidInputError):
        ann.label("q", first.id, LabelSubmit(value="meh"), alice)
    with pytest.raises(ConflictError):
        ann.label("q", second.id, LabelSubmit(value="good"), alice)  # bob holds it
    ann.label("q", first.id, LabelSubmit(value="bad", text="rude"), alice)
    ann.skip("q", second.id, Actor(name="bob", role="viewer"))
    counts = ann.counts("q")
    assert (counts.pending, counts.assigned, counts.labelled, counts.skipped) == (2, 0, 1, 1)
    label_fb = container.feedback.list(ids[0])
    assert [(f.kind, f.name, f.comment) for f in label_fb] == [("label", "quality", "bad: rude")]
    with pytest.raises(ConflictError):
        ann.label("q", first.id, LabelSubmit(value="good"), alice)
    # an expired lease frees the item for someone else: the holder's lease, not the caller's
    held = ann.next_item("q", "carol", lease_s=0)
    assert held is not None and held.label is None  # the lease is not shown as a label
    again = ann.next_item("q", "dave")
    assert again is not None and again.id == held.id and again.assignee == "dave"
    other = ann.next_item("q", "erin", lease_s=0.001)  # dave's 900 s lease still holds
    assert other is not None and other.id != again.id
    assert ann.refill("q", ME) == 0
    with pytest.raises(ConflictError):
        _queue(container)


def test_uncertainty_ordering(container: Container) -> None:
    sure, unsure, mid = add_traces(
        container,
        [
            {"guard_verdicts": [{"action": "allow", "score": 0.02}]},
            {"guard_verdicts": [{"action": "flag", "score": 0.49}]},
            {"extra": {"llmloop.mean_logprob": -0.5}},
        ],
    )
    _queue(container, ordering="uncertainty")
    order = [container.annotation.next_item("q", f"u{i}") for i in range(3)]
    assert [o.item_ref for o in order if o] == [unsure, mid, sure]
    assert uncertainty({"attributes": {}, "guard_verdicts": None}) == 0.0


def test_queue_filters_on_feedback_and_flags(container: Container) -> None:
    low, high, flagged = add_traces(
        container,
        [
            {},
            {},
            {"guard_verdicts": [{"action": "block", "rule_id": "x"}]},
        ],
    )
    container.feedback.add(low, FeedbackCreate(kind="thumbs", value=0), ME)
    container.feedback.add(high, FeedbackCreate(kind="thumbs", value=1), ME)
    _queue(container, "lowq", filter=QueueFilter(max_feedback=0.5))
    _queue(container, "flagq", filter=QueueFilter(flagged=True))
    assert container.annotation.next_item("lowq", "a").item_ref == low  # type: ignore[union-attr]
    assert container.annotation.next_item("flagq", "a").item_ref == flagged  # type: ignore[union-attr]
    assert container.annotation.counts("flagq").pending == 0


def test_numeric_schema_and_dataset_queue(container: Container) -> None:
    from llmloop.core.datasets import DatasetVersionCreate

    with pytest.raises(ValidationError):
        LabelSchema(kind="numeric", min=5, max=1)
    container.datasets.create_version(
        "evalset", DatasetVersionCreate(rows=[{"prompt": f"q{i}"} for i in range(3)]), ME
    )
    schema = LabelSchema(kind="numeric", name="score", min=1, max=5, free_text=False)
    container.annotation.create_queue(
        QueueCreate(
            name="dq", source="dataset", filter=QueueFilter(dataset="evalset"), label_schema=schema
        ),
        ME,
    )
    item = container.annotation.next_item("dq", "a")
    assert item is not None and item.content == {"prompt": "q0"}
    with pytest.raises(InvalidInputError):
        container.annotation.label("dq", item.id, LabelSubmit(value=7), ME)
    with pytest.raises(InvalidInputError):
        container.annotation.label("dq", item.id, LabelSubmit(value=3, text="no"), ME)
    done = container.annotation.label("dq", item.id, LabelSubmit(value=3), ME)
    assert done.status == "labelled" and done.label == {"value": 3.0, "text": ""}
