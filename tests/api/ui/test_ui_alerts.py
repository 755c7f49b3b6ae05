"""The alerts pages: rules, events, the create form, delete, evaluate now, roles and escaping."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from llmloop.core.alerts import AlertRuleCreate
from llmloop.core.ids import new_id
from llmloop.core.traces import TraceRecord
from llmloop.errors import NotFoundError
from llmloop.services.actors import local_actor
from llmloop.services.gateway.trace_table import TraceTable
from llmloop.ui.pages.alerts import duration_text

FORM = {"name": "high-errors", "metric": "error_rate", "comparison": ">=", "threshold": "0.5",
        "window": "10m", "for_duration": "2m", "deployment": "chat", "webhook_url": ""}  # fmt: skip


def _error_trace(app: FastAPI, deployment: str = "chat") -> None:
    record = TraceRecord(id=new_id("trace"), at=datetime.now(UTC), operation="chat",
                         deployment=deployment, status="error", latency_ms=5.0)  # fmt: skip
    table = TraceTable(app.state.container.store, max_text=4000)
    table.insert([table.row(record)])


def _rule(app: FastAPI, **kw: Any) -> None:
    spec = {"name": "errs", "metric": "error_rate", "threshold": 0.5, "comparison": ">=", **kw}
    app.state.container.alerts.create(AlertRuleCreate.model_validate(spec), local_actor())


def _follow(tc: TestClient, response: Any) -> str:
    assert response.status_code == 303, response.text
    return str(tc.get(response.headers["location"]).text)


def test_empty_state_and_the_form(ui: TestClient) -> None:
    page = ui.get("/ui/alerts")
    assert page.status_code == 200
    assert "No alert rules yet" in page.text and "No alert events yet" in page.text
    assert 'action="/ui/alerts"' in page.text and 'name="threshold"' in page.text
    assert '<option value="drift.input_embedding">' in page.text
    assert 'class="active" aria-current="page">Alerts' in page.text


def test_creating_a_rule_stores_what_the_form_said(ui: TestClient, app: FastAPI) -> None:
    response = ui.post("/ui/alerts", data=FORM)
    assert response.headers["location"] == "/ui/alerts"
    assert unquote(response.headers["set-cookie"]).count("Created alert rule 'high-errors'.")
    page = ui.get("/ui/alerts").text
    assert "Created alert rule" in page
    rule = app.state.container.alerts.get("high-errors")
    assert rule.spec.window_s == 600 and rule.spec.for_s == 120
    assert rule.spec.comparison == ">=" and rule.spec.threshold == 0.5
    assert rule.spec.deployment == "chat" and rule.spec.webhook_url is None
    assert rule.created_by == "admin-key"
    assert "<code>error_rate &gt;= 0.5</code>" in page
    assert "<td>10m</td><td>2m</td>" in page
    assert '<span class="badge ok">ok</span>' in page
    assert 'href="/ui/alerts/high-errors"' in page


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"threshold": "lots"}, "threshold must be a number, not &#39;lots&#39;"),
        ({"threshold": "nan"}, "threshold must be a number"),
        ({"metric": "vibes"}, "unknown metric &#39;vibes&#39;"),
        ({"window": "5 parsecs"}, "window: not a duration"),
        ({"window": "0"}, "window (seconds): Input should be greater than 0"),
        ({"for_duration": "soon"}, "for: not a duration"),
        ({"name": "no spaces/here"}, "name: must be 1-128 characters"),
        ({"comparison": "=="}, "comparison: Input should be"),
        ({"webhook_url": "not a url"}, "webhook_url:"),
    ],
)
def test_a_bad_form_keeps_the_input_and_changes_nothing(
    ui: TestClient, app: FastAPI, change: dict[str, str], message: str
) -> None:
    page = ui.post("/ui/alerts", data={**FORM, **change})
    assert page.status_code == 422
    assert 'class="flash error"' in page.text and message in page.text
    assert 'value="high-errors"' in page.text or "name" in change  # what was typed stays
    assert app.state.container.alerts.list() == []


def test_a_duplicate_name_is_a_conflict(ui: TestClient, app: FastAPI) -> None:
    _rule(app, name="high-errors")
    page = ui.post("/ui/alerts", data=FORM)
    assert page.status_code == 409
    assert "an alert rule named &#39;high-errors&#39; exists" in page.text
    assert len(app.state.container.alerts.list()) == 1


def test_a_viewer_reads_but_cannot_change(
    viewer_ui: TestClient, app: FastAPI, keys: dict[str, str]
) -> None:
    _rule(app)
    page = viewer_ui.get("/ui/alerts")
    assert page.status_code == 200 and "errs" in page.text
    assert "New rule" not in page.text and "/delete" not in page.text
    assert "Evaluate now" not in page.text
    for url, data in (("/ui/alerts", FORM), ("/ui/alerts/errs/delete", {}),
                      ("/ui/alerts/evaluate", {})):  # fmt: skip
        refused = viewer_ui.post(url, data=data)
        assert refused.status_code == 403, url
        assert "this needs &#39;editor&#39; or higher" in refused.text
    assert [r.name for r in app.state.container.alerts.list()] == ["errs"]
    assert app.state.container.alerts.get("errs").state == "ok"


def test_evaluate_now_fires_and_shows_the_event(ui: TestClient, app: FastAPI) -> None:
    _error_trace(app)
    _rule(app)
    page = _follow(ui, ui.post("/ui/alerts/evaluate"))
    assert "Evaluated the rules: 1 fired, 0 resolved." in page
    assert app.state.container.alerts.get("errs").state == "firing"
    assert '<span class="badge firing">firing</span>' in page
    events = page.split('<table class="events">', 1)[1]
    assert "errs firing: error_rate = 1" in events and "<td>yes</td>" in events
    rule_page = ui.get("/ui/alerts/errs")
    assert rule_page.status_code == 200
    assert "errs firing: error_rate = 1" in rule_page.text
    assert "error_rate &gt;= 0.5" in rule_page.text
    again = _follow(ui, ui.post("/ui/alerts/evaluate"))
    assert "0 fired, 0 resolved" in again  # a firing rule notifies once


def test_deleting_a_rule_removes_it_and_its_events(ui: TestClient, app: FastAPI) -> None:
    _error_trace(app)
    _rule(app)
    ui.post("/ui/alerts/evaluate")
    page = ui.get("/ui/alerts/errs")
    assert 'data-confirm="Delete alert rule errs and its events?"' in page.text
    response = ui.post("/ui/alerts/errs/delete")
    page_text = _follow(ui, response)
    assert "Deleted alert rule &#39;errs&#39; and its events." in page_text
    assert app.state.container.alerts.list() == []
    assert app.state.container.alerts.events() == []
    with pytest.raises(NotFoundError):
        app.state.container.alerts.get("errs")
    gone = _follow(ui, ui.post("/ui/alerts/errs/delete"))
    assert "no alert rule named &#39;errs&#39;" in gone and 'class="flash error"' in gone


def test_an_unknown_rule_is_a_404_page_with_the_name_escaped(ui: TestClient) -> None:
    page = ui.get("/ui/alerts/<script>x<script> y")
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    assert "<script>x" not in page.text
    assert "no alert rule named &#39;&lt;script&gt;x&lt;script&gt; y&#39;" in page.text


def test_hostile_deployment_and_webhook_are_escaped(ui: TestClient, app: FastAPI) -> None:
    form = {**FORM, "deployment": "<img src=x onerror=alert(1)>",
            "webhook_url": "https://hooks.example/a?b=<c>"}  # fmt: skip
    _follow(ui, ui.post("/ui/alerts", data=form))
    page = ui.get("/ui/alerts")
    assert "<img src=x" not in page.text
    assert "&lt;img src=x onerror=alert(1)&gt;" in page.text
    detail = ui.get("/ui/alerts/high-errors").text
    assert "<img src=x" not in detail and "<c>" not in detail
    assert "hooks.example" in detail


def test_a_form_from_another_site_is_refused(ui: TestClient, app: FastAPI) -> None:
    response = ui.post("/ui/alerts", data=FORM, headers={"Origin": "https://evil.example"})
    assert response.status_code == 403
    assert app.state.container.alerts.list() == []


def test_duration_text() -> None:
    assert [duration_text(s) for s in (None, 0, 45, 60, 90, 3600, 86400, 1.5)] == [
        "-", "0", "45s", "1m", "90s", "1h", "1d", "1.5s",
    ]  # fmt: skip


def test_a_window_out_of_range_is_named_as_on_the_form(ui: TestClient) -> None:
    for value in ("99999d", "0"):
        page = ui.post("/ui/alerts", data={**FORM, "window": value})
        assert page.status_code == 422, value
        assert "window_s" not in page.text, value
        assert "window (seconds): Input should be" in page.text, value
