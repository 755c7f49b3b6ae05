"""The annotation pages: queues, the create form, leasing, labelling, skipping, roles, escaping."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from llmloop.core.datasets import DatasetVersionCreate
from llmloop.core.feedback import LabelSchema, QueueCreate, QueueFilter
from llmloop.core.ids import new_id
from llmloop.core.traces import TraceRecord
from llmloop.services.actors import local_actor
from llmloop.services.gateway.trace_table import TraceTable

FORM = {"name": "review", "source": "traces", "deployment": "", "status": "", "flagged": "",
        "since": "", "limit": "1000", "dataset": "", "version": "", "kind": "categorical",
        "label_name": "quality", "choices": "good, bad", "min": "", "max": "",
        "free_text": "on", "ordering": "created"}  # fmt: skip


def _traces(app: FastAPI, n: int, deployment: str = "chat", **kw: Any) -> list[str]:
    now = datetime.now(UTC)
    records = [
        TraceRecord(
            id=new_id("trace"), at=now - timedelta(seconds=60 - i), operation="chat",
            deployment=deployment, latency_ms=50.0,
            request_text=f"system: be brief\nuser: question {i}\nover two lines",
            response_text=f"answer {i}", **kw,
        )
        for i in range(n)
    ]  # fmt: skip
    table = TraceTable(app.state.container.store, max_text=4000)
    table.insert([table.row(r) for r in records])
    return [r.id for r in records]


def _queue(app: FastAPI, queue: str = "review", **schema: Any) -> None:
    label_schema = LabelSchema.model_validate(
        schema or {"kind": "categorical", "name": "quality", "choices": ["good", "bad"]}
    )
    app.state.container.annotation.create_queue(
        QueueCreate(name=queue, label_schema=label_schema), local_actor()
    )


def _counts(app: FastAPI, name: str = "review") -> dict[str, int]:
    return dict(app.state.container.annotation.counts(name).model_dump())


def _go(tc: TestClient, response: Any) -> tuple[str, str]:
    """(location, the page there) after a 303."""
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    return location, str(tc.get(location, follow_redirects=True).text)


def _item_id(location: str) -> int:
    found = re.fullmatch(r"/ui/annotation/[^/]+/items/(\d+)", location)
    assert found, location
    return int(found.group(1))


def test_empty_state_and_the_form(ui: TestClient) -> None:
    page = ui.get("/ui/annotation")
    assert page.status_code == 200
    assert "No annotation queues yet" in page.text
    assert 'action="/ui/annotation"' in page.text and 'name="choices"' in page.text
    assert 'class="active" aria-current="page">Annotation' in page.text


def test_creating_a_queue_from_the_form(ui: TestClient, app: FastAPI) -> None:
    _traces(app, 3, "chat")
    _traces(app, 2, "other", status="error")
    data = {**FORM, "deployment": "chat", "since": "1h", "ordering": "uncertainty"}
    location, page = _go(ui, ui.post("/ui/annotation", data=data))
    assert location == "/ui/annotation/review"
    assert "Created queue &#39;review&#39; with 3 items." in page
    queue = app.state.container.annotation.get_queue("review")
    assert queue.label_schema.choices == ["good", "bad"] and queue.label_schema.name == "quality"
    assert queue.filter.deployment == "chat" and queue.filter.since is not None
    assert queue.ordering == "uncertainty" and queue.label_schema.free_text
    assert queue.counts.pending == 3 and queue.created_by == "admin-key"
    assert "good, bad" in page and "least certain first" in page
    listing = ui.get("/ui/annotation").text
    assert 'href="/ui/annotation/review"' in listing
    assert '<td class="num">3</td><td class="num">0</td>' in listing


def test_a_numeric_queue_over_error_traces(ui: TestClient, app: FastAPI) -> None:
    _traces(app, 2, status="error")
    _traces(app, 1)
    data = {**FORM, "name": "scores", "kind": "numeric", "min": "1", "max": "5",
            "free_text": "", "status": "error"}  # fmt: skip
    _go(ui, ui.post("/ui/annotation", data=data))
    queue = app.state.container.annotation.get_queue("scores")
    assert (queue.label_schema.kind, queue.label_schema.min, queue.label_schema.max) == (
        "numeric", 1.0, 5.0,
    )  # fmt: skip
    assert not queue.label_schema.free_text and queue.counts.pending == 2


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"choices": "only-one"}, "at least two distinct choices"),
        ({"name": "bad name/x"}, "name: must be 1-128 characters"),
        ({"kind": "numeric", "min": "5", "max": "1"}, "a numeric schema needs min &lt; max"),
        ({"kind": "numeric", "min": "low", "max": "5"}, "min must be a number"),
        ({"limit": "many"}, "limit must be a whole number"),
        ({"limit": "0"}, "filter.limit: Input should be greater than or equal to 1"),
        ({"since": "yesterday"}, "since: not a time or duration"),
        ({"source": "dataset"}, "a dataset queue needs filter.dataset"),
        ({"source": "dataset", "dataset": "nope"}, "nope"),
        ({"ordering": "random"}, "ordering: Input should be"),
    ],
)
def test_a_bad_form_keeps_the_input_and_creates_nothing(
    ui: TestClient, app: FastAPI, change: dict[str, str], message: str
) -> None:
    _traces(app, 1)
    page = ui.post("/ui/annotation", data={**FORM, **change})
    assert page.status_code in (404, 422), page.text
    assert 'class="flash error"' in page.text and message in page.text
    assert f'value="{change.get("name", "review")}"' in page.text
    assert app.state.container.annotation.list_queues() == []


def test_a_duplicate_name_is_a_conflict(ui: TestClient, app: FastAPI) -> None:
    _queue(app)
    page = ui.post("/ui/annotation", data=FORM)
    assert page.status_code == 409
    assert "an annotation queue named &#39;review&#39; exists" in page.text


def test_a_viewer_labels_but_cannot_create_or_refill(
    viewer_ui: TestClient, app: FastAPI, keys: dict[str, str]
) -> None:
    _traces(app, 1)
    _queue(app)
    listing = viewer_ui.get("/ui/annotation").text
    assert "New queue" not in listing
    assert "/refill" not in viewer_ui.get("/ui/annotation/review").text
    for url, data in (("/ui/annotation", {**FORM, "name": "mine"}),
                      ("/ui/annotation/review/refill", {})):  # fmt: skip
        refused = viewer_ui.post(url, data=data)
        assert refused.status_code == 403, url
        assert "this needs &#39;editor&#39; or higher" in refused.text
    assert [q.name for q in app.state.container.annotation.list_queues()] == ["review"]
    location, _ = _go(viewer_ui, viewer_ui.post("/ui/annotation/review/next"))
    response = viewer_ui.post(f"{location}/label", data={"value": "bad"})
    assert response.status_code == 303
    assert _counts(app)["labelled"] == 1


def test_label_next_then_submit_writes_feedback_and_leases_the_next(
    ui: TestClient, app: FastAPI
) -> None:
    ids = _traces(app, 2)
    _queue(app)
    page = ui.get("/ui/annotation/review")
    assert 'action="/ui/annotation/review/next"' in page.text and "quality" in page.text
    location, item_page = _go(ui, ui.post("/ui/annotation/review/next"))
    first = _item_id(location)
    assert _counts(app) == {"pending": 1, "assigned": 1, "labelled": 0, "skipped": 0}
    assert '<div class="msg system"><span class="role">system</span>be brief</div>' in item_page
    assert '<span class="role">user</span>question 0\nover two lines</div>' in item_page
    assert '<div class="msg other assistant"><span class="role">response</span>answer 0' in (
        item_page
    )
    assert '<input type="radio" name="value" value="good" required>' in item_page
    assert 'name="text"' in item_page and f'href="/ui/traces/{ids[0]}"' in item_page
    response = ui.post(f"{location}/label", data={"value": "good", "text": "fine answer"})
    second_location, second_page = _go(ui, response)
    assert _item_id(second_location) != first
    assert f"Labelled item {first}." in second_page and "answer 1" in second_page
    feedback = app.state.container.feedback.list(ids[0])
    assert [(f.kind, f.name, f.comment) for f in feedback] == [
        ("label", "quality", "good: fine answer")
    ]
    assert _counts(app) == {"pending": 0, "assigned": 1, "labelled": 1, "skipped": 0}
    done_location, done = _go(ui, ui.post(f"{second_location}/skip"))
    assert done_location == "/ui/annotation/review"
    assert "Skipped item" in done and "Nothing is left to label in this queue." in done
    assert _counts(app) == {"pending": 0, "assigned": 0, "labelled": 1, "skipped": 1}
    assert "disabled" in ui.get("/ui/annotation/review").text


def test_a_numeric_label_is_a_score(ui: TestClient, app: FastAPI) -> None:
    (tid,) = _traces(app, 1)
    _queue(app, "scores", kind="numeric", name="helpfulness", min=1, max=5, free_text=False)
    location, page = _go(ui, ui.post("/ui/annotation/scores/next"))
    assert 'type="number" min="1.0" max="5.0" step="any"' in page and 'name="text"' not in page
    for value, message in (("loads", "the label must be a number"),
                           ("9", "label must be a number in [1.0, 5.0]"),
                           ("", "enter a number first")):  # fmt: skip
        back, shown = _go(ui, ui.post(f"{location}/label", data={"value": value}))
        assert back == location and message in unquote(shown), value
    assert _counts(app, "scores")["assigned"] == 1
    _go(ui, ui.post(f"{location}/label", data={"value": "4"}))
    (feedback,) = app.state.container.feedback.list(tid)
    assert (feedback.value, feedback.scale_min, feedback.scale_max) == (4.0, 1.0, 5.0)


def test_a_bad_label_keeps_the_item_and_changes_nothing(ui: TestClient, app: FastAPI) -> None:
    (tid,) = _traces(app, 1)
    _queue(app)
    location, _ = _go(ui, ui.post("/ui/annotation/review/next"))
    choices = "[&#39;good&#39;, &#39;bad&#39;]"
    for data, message in (({"value": "meh"}, f"label must be one of {choices}"),
                          ({}, "choose a label first")):  # fmt: skip
        back, page = _go(ui, ui.post(f"{location}/label", data=data))
        assert back == location and message in page and 'class="flash error"' in page
    assert _counts(app) == {"pending": 0, "assigned": 1, "labelled": 0, "skipped": 0}
    assert app.state.container.feedback.list(tid) == []


def test_an_item_already_labelled_says_so(ui: TestClient, app: FastAPI) -> None:
    _traces(app, 2)
    _queue(app)
    location, _ = _go(ui, ui.post("/ui/annotation/review/next"))
    ui.post(f"{location}/label", data={"value": "good"})
    back, page = _go(ui, ui.post(f"{location}/label", data={"value": "bad"}))
    assert back == "/ui/annotation/review"
    assert f"item {_item_id(location)} is already labelled" in page
    shown = ui.get(location)
    assert shown.status_code == 200
    assert "Labelled <strong>good</strong>" in shown.text and "Submit and next" not in shown.text
    assert _counts(app) == {"pending": 0, "assigned": 1, "labelled": 1, "skipped": 0}  # the next


def test_an_item_someone_else_holds_cannot_be_labelled(
    viewer_ui: TestClient, app: FastAPI, keys: dict[str, str]
) -> None:
    _traces(app, 1)
    _queue(app)
    held = app.state.container.annotation.next_item("review", "bob")
    assert held is not None
    url = f"/ui/annotation/review/items/{held.id}"
    back, page = _go(viewer_ui, viewer_ui.post(f"{url}/label", data={"value": "good"}))
    assert back == "/ui/annotation/review"
    assert "is assigned to &#39;bob&#39;: your lease expired and someone else holds it" in page
    back, page = _go(viewer_ui, viewer_ui.post(f"{url}/skip"))
    assert "assigned to &#39;bob&#39;" in page
    shown = viewer_ui.get(url)  # read only: looking leases nothing and takes nothing from bob
    assert shown.status_code == 200
    assert "bob holds this item" in shown.text and "Submit and next" not in shown.text
    assert _counts(app) == {"pending": 0, "assigned": 1, "labelled": 0, "skipped": 0}


def test_opening_a_pending_item_leases_nothing(ui: TestClient, app: FastAPI) -> None:
    _traces(app, 2)
    _queue(app)
    items = app.state.container.annotation
    pending = [i for i in (items.get_item("review", n) for n in (1, 2)) if i.status == "pending"]
    page = ui.get(f"/ui/annotation/review/items/{pending[0].id}")
    assert page.status_code == 200 and "Not leased" in page.text and "Submit and next" in page.text
    assert _counts(app) == {"pending": 2, "assigned": 0, "labelled": 0, "skipped": 0}
    assert ui.get("/ui/annotation/review/items/999").status_code == 404


def test_refill_adds_new_traces(ui: TestClient, app: FastAPI) -> None:
    _traces(app, 1)
    _queue(app)
    _traces(app, 2)
    _, page = _go(ui, ui.post("/ui/annotation/review/refill"))
    assert "Added 2 new items" in page
    assert _counts(app)["pending"] == 3


def test_a_dataset_queue_shows_the_row(ui: TestClient, app: FastAPI) -> None:
    rows = [
        {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}]}
        for i in range(2)
    ]
    datasets = app.state.container.datasets
    datasets.create_version("qa", DatasetVersionCreate(rows=rows), local_actor())
    data = {**FORM, "source": "dataset", "dataset": "qa"}
    _go(ui, ui.post("/ui/annotation", data=data))
    assert _counts(app)["pending"] == 2
    _, page = _go(ui, ui.post("/ui/annotation/review/next"))
    assert '<div class="msg user"><span class="role">user</span>q0</div>' in page
    assert '<div class="msg assistant"><span class="role">assistant</span>a</div>' in page
    assert "/ui/traces/" not in page


def test_unknown_queues_and_items_are_404_pages(ui: TestClient, app: FastAPI) -> None:
    _queue(app)
    for url in ("/ui/annotation/nope", "/ui/annotation/nope/items/1",
                "/ui/annotation/review/items/abc", "/ui/annotation/<b>x<b> y"):  # fmt: skip
        page = ui.get(url)
        assert page.status_code == 404, url
        assert page.headers["content-type"].startswith("text/html")
        assert "<b>x" not in page.text
    assert (
        "no annotation queue named &#39;&lt;b&gt;x&lt;b&gt; y&#39;"
        in ui.get("/ui/annotation/<b>x<b> y").text
    )
    for url in ("/ui/annotation/nope/next", "/ui/annotation/nope/items/1/label"):
        response = ui.post(url, data={"value": "good"})
        assert response.status_code in (303, 404), url
        if response.status_code == 303:
            _, page = _go(ui, response)
            assert "no annotation queue named &#39;nope&#39;" in page


def test_hostile_content_is_escaped(ui: TestClient, app: FastAPI) -> None:
    table = TraceTable(app.state.container.store, max_text=4000)
    table.insert([table.row(TraceRecord(
        id=new_id("trace"), at=datetime.now(UTC), operation="chat", deployment="<script>d</script>",
        request_text="user: <script>alert(1)</script>", response_text="<img src=x onerror=y>",
    ))])  # fmt: skip
    spec = QueueCreate(
        name="evil", filter=QueueFilter(deployment="<script>d</script>"),
        label_schema=LabelSchema(kind="categorical", choices=["<b>yes</b>", "no"]),
    )  # fmt: skip
    app.state.container.annotation.create_queue(spec, local_actor())
    listing = ui.get("/ui/annotation").text
    assert "<script>d</script>" not in listing and "&lt;script&gt;d&lt;/script&gt;" in listing
    assert "<b>yes</b>" not in listing and "&lt;b&gt;yes&lt;/b&gt;, no" in listing
    location, page = _go(ui, ui.post("/ui/annotation/evil/next"))
    assert "<script>" not in page and "<img src" not in page and "<b>yes" not in page
    assert '<span class="role">user</span>&lt;script&gt;alert(1)&lt;/script&gt;</div>' in page
    assert "&lt;img src=x onerror=y&gt;" in page
    assert 'value="&lt;b&gt;yes&lt;/b&gt;"' in page
    _go(ui, ui.post(f"{location}/label", data={"value": "<b>yes</b>"}))
    assert _counts(app, "evil")["labelled"] == 1
    (feedback,) = app.state.container.feedback.list()
    assert feedback.comment == "<b>yes</b>"


def test_a_label_form_from_another_site_is_refused(ui: TestClient, app: FastAPI) -> None:
    _traces(app, 1)
    _queue(app)
    location, _ = _go(ui, ui.post("/ui/annotation/review/next"))
    response = ui.post(
        f"{location}/label", data={"value": "good"}, headers={"Origin": "https://evil.example"}
    )
    assert response.status_code == 403
    assert _counts(app)["labelled"] == 0
