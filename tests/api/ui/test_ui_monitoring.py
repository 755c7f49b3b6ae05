"""The monitoring page: toolbar, summary per group, charts, drift results, bad query values."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from llmloop.core.feedback import FeedbackCreate
from llmloop.core.ids import new_id
from llmloop.core.monitoring import DriftRunCreate, Window
from llmloop.core.traces import TraceRecord
from llmloop.services.actors import local_actor
from llmloop.services.gateway.trace_table import TraceTable
from llmloop.ui.pages.monitoring import WINDOWS, View, bucket_grid

HOSTILE = "<script>x</script> a/b"


def _traces(app: FastAPI, n: int, deployment: str = "chat", **kw: Any) -> list[str]:
    now = datetime.now(UTC)
    records = [
        TraceRecord(
            id=new_id("trace"),
            at=now - timedelta(seconds=30 + i),
            operation="chat",
            deployment=deployment,
            latency_ms=100.0 + 10 * i,
            ttft_ms=20.0 + i,
            input_tokens=10,
            output_tokens=5,
            cost=0.001,
            request_text=f"user: question {i} about invoices",
            response_text=f"answer {i}",
            **kw,
        )
        for i in range(n)
    ]
    table = TraceTable(app.state.container.store, max_text=4000)
    table.insert([table.row(r) for r in records])
    return [r.id for r in records]


def _summary_rows(html: str) -> dict[str, list[str]]:
    """First cell -> the other cells of the summary table."""
    body = html.split('<table class="summary">', 1)[1].split("</table>", 1)[0]
    out = {}
    for row in re.findall(r"<tr><td>(.*?)</tr>", body, re.S):
        cells = [re.sub(r"<[^>]+>", "", c).strip() for c in re.split(r"</td>\s*<td[^>]*>", row)]
        out[cells[0]] = [c.removesuffix("</td>").strip() for c in cells[1:]]
    return out


def test_empty_state_says_what_to_do(ui: TestClient) -> None:
    page = ui.get("/ui/monitoring")
    assert page.status_code == 200
    assert "No traffic in this window yet" in page.text
    assert "No drift results yet" in page.text
    assert 'class="active" aria-current="page">Monitoring' in page.text
    assert '<option value="24h" selected>' in page.text


def test_summary_per_deployment_and_charts(ui: TestClient, app: FastAPI) -> None:
    _traces(app, 10, "chat")
    _traces(app, 4, "search", status="error")
    _traces(app, 1, "search", guard_verdicts=[{"guard": "pii", "action": "block"}])
    page = ui.get("/ui/monitoring", params={"window": "1h"})
    assert page.status_code == 200
    rows = _summary_rows(page.text)
    assert list(rows) == ["chat", "search"]  # busiest first
    assert rows["chat"][0] == "10" and rows["search"][0] == "5"
    assert rows["chat"][2] == "145"  # latency p50 of 100..190 ms
    assert rows["search"][10] == "80 %"  # four errors of five
    assert rows["search"][11] == "20 %"  # one blocked by a guard
    assert rows["chat"][9] == "0.01"  # cost of ten requests
    # one chart per metric (tokens split in two with several groups), a line per deployment
    assert page.text.count('<svg class="chart') == 9
    assert page.text.count('<svg class="chart empty"') == 1  # no feedback yet
    assert "Latency p95" in page.text and "Tokens: output tokens" in page.text
    assert '<span class="key"><i style="background:#2563eb"></i>chat</span>' in page.text
    assert "deployment=chat&amp;group_by=model_version" in page.text
    assert '<option value="chat">chat</option>' in page.text


def test_a_single_group_draws_every_percentile(ui: TestClient, app: FastAPI) -> None:
    _traces(app, 6, "chat")
    _traces(app, 3, "other")
    page = ui.get("/ui/monitoring", params={"deployment": "chat", "window": "6h"})
    assert page.status_code == 200
    assert list(_summary_rows(page.text)) == ["chat"]
    assert '<option value="chat" selected>chat</option>' in page.text
    assert ">p50</span>" in page.text and ">p99</span>" in page.text
    assert "input tokens</span>" in page.text  # in and out on one chart
    assert page.text.count('<svg class="chart') == 8


def test_group_by_model_version_and_key(ui: TestClient, app: FastAPI, keys: Any) -> None:
    admin = next(k for k in app.state.container.keys.list() if k.name == "admin-key")
    _traces(app, 3, model_version_id="mv_one", key_id=admin.id)
    _traces(app, 2)
    by_version = _summary_rows(ui.get("/ui/monitoring?group_by=model_version").text)
    assert by_version["mv_one"][0] == "3" and by_version["(none)"][0] == "2"
    by_key = _summary_rows(ui.get("/ui/monitoring?group_by=key").text)
    assert by_key["admin-key"][0] == "3"  # an admin sees key names


def test_a_viewer_sees_key_ids_not_names(viewer_ui: TestClient, app: FastAPI, keys: Any) -> None:
    admin = next(k for k in app.state.container.keys.list() if k.name == "admin-key")
    _traces(app, 2, key_id=admin.id)
    page = viewer_ui.get("/ui/monitoring?group_by=key")
    assert page.status_code == 200
    assert admin.id in _summary_rows(page.text)
    assert "admin-key" not in page.text


def test_feedback_mean_is_shown(ui: TestClient, app: FastAPI) -> None:
    ids = _traces(app, 2)
    for tid, value in zip(ids, (1.0, 0.0), strict=True):
        app.state.container.feedback.add(
            tid, FeedbackCreate(kind="thumbs", value=value), local_actor()
        )
    rows = _summary_rows(ui.get("/ui/monitoring").text)
    assert rows["chat"][12] == "0.5"


def test_bad_query_values_give_a_clear_message(ui: TestClient) -> None:
    for params, message in (
        ({"window": "2y"}, "window must be one of 1h, 6h, 24h, 7d, 30d"),
        ({"group_by": "colour"}, "group by must be one of deployment"),
        ({"deployment": "d" * 300}, "at most 256 characters"),
        ({"window": "<b>bold</b>"}, "&lt;b&gt;bold&lt;/b&gt;"),
    ):
        page = ui.get("/ui/monitoring", params=params)
        assert page.status_code == 422, params
        assert page.headers["content-type"].startswith("text/html")
        assert message in page.text
    assert "<b>bold</b>" not in ui.get("/ui/monitoring", params={"window": "<b>bold</b>"}).text


def test_a_hostile_deployment_name_is_escaped_and_linked(ui: TestClient, app: FastAPI) -> None:
    _traces(app, 2, HOSTILE)
    page = ui.get("/ui/monitoring")
    assert "<script>x</script>" not in page.text
    assert "&lt;script&gt;x&lt;/script&gt; a/b" in page.text
    assert "deployment=%3Cscript%3Ex%3C%2Fscript%3E%20a%2Fb&amp;" in page.text
    filtered = ui.get("/ui/monitoring", params={"deployment": HOSTILE})
    assert filtered.status_code == 200
    assert list(_summary_rows(filtered.text)) == ["&lt;script&gt;x&lt;/script&gt; a/b"]


def test_unknown_deployment_filter_is_an_empty_view(ui: TestClient, app: FastAPI) -> None:
    _traces(app, 2)
    page = ui.get("/ui/monitoring", params={"deployment": "ghost"})
    assert page.status_code == 200
    assert "No traffic in this window yet" in page.text


def test_drift_results_of_the_chosen_deployment(ui: TestClient, app: FastAPI) -> None:
    _traces(app, 12, "chat")
    _traces(app, 1, "other")
    c = app.state.container
    c.drift.embedder = lambda texts: [[len(x), x.count("1")] for x in texts]
    now = datetime.now(UTC)
    spec = DriftRunCreate(
        deployment="chat",
        reference=Window(since=now - timedelta(minutes=10), until=now - timedelta(seconds=36)),
        current=Window(since=now - timedelta(seconds=36)),
    )
    report = c.drift.run(spec, local_actor())
    assert report.results
    page = ui.get("/ui/monitoring", params={"deployment": "chat"})
    drift = page.text.split('<table class="drift">', 1)[1].split("</table>", 1)[0]
    assert "input_embedding" in drift and "mmd" in drift and "prompt_length" in drift
    assert drift.count("<tr><td") == len(report.results)
    assert ("badge firing" in drift) == any(r.drifted for r in report.results)
    assert "badge ok" in drift or "badge firing" in drift
    other = ui.get("/ui/monitoring", params={"deployment": "other"})
    assert "No drift results yet" in other.text
    everyone = ui.get("/ui/monitoring").text
    assert "<th>Deployment</th>" in everyone.split('<table class="drift">', 1)[1]


def test_every_window_has_between_30_and_121_points() -> None:
    now = datetime(2025, 3, 1, 12, 34, 56, tzinfo=UTC)
    for key, (_, span, bucket) in WINDOWS.items():
        view = View(key, "", "deployment", now - timedelta(seconds=span), now, bucket)
        grid = bucket_grid(view)
        assert 30 <= len(grid) <= 121, key
        assert grid[0] <= view.since < grid[1] and grid[-1] <= now


def test_the_page_needs_a_sign_in(app: FastAPI) -> None:
    with TestClient(app, follow_redirects=False) as tc:
        response = tc.get("/ui/monitoring?window=1h")
        assert response.status_code == 303
        assert response.headers["location"].startswith("/ui/login?next=/ui/monitoring")


def test_latencies_over_a_second_keep_their_digits(app: FastAPI, ui: TestClient) -> None:
    # Three significant digits in "g" format wrote 1234.5 ms as "1.23e+03".
    from llmloop.ui.web import _num

    assert [_num(v) for v in (999.9, 1234.5, 9999.4, 12.345, 0.000123)] == [
        "1,000", "1,234", "9,999", "12.3", "0.000123",
    ]  # fmt: skip
    record = TraceRecord(id=new_id("trace"), at=datetime.now(UTC), operation="chat",
                         deployment="chat", latency_ms=1234.5, ttft_ms=2345.6)  # fmt: skip
    table = TraceTable(app.state.container.store, max_text=4000)
    table.insert([table.row(record)])
    for path in ("/ui/monitoring", "/ui/", "/ui/traces"):
        main = ui.get(path).text.split("<main>")[1].split("<svg")[0]
        assert "e+0" not in main, path
        assert "1,234" in main or "1,235" in main, path
