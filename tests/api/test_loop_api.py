"""The loop over HTTP: feedback (404 on an unknown trace, 422 on a bad kind), annotation queues,
monitoring summary and time series, drift run and results, alert rules and events, curation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi import FastAPI
from fastapi.testclient import TestClient

from llmloop.core.ids import new_id
from llmloop.core.traces import TraceRecord
from llmloop.services.gateway.trace_table import TraceTable


def _traces(app: FastAPI, n: int, **kw: object) -> list[str]:
    now = datetime.now(UTC)
    traces = [
        TraceRecord(
            id=new_id("trace"),
            at=now - timedelta(seconds=i),
            operation="chat",
            deployment="dep",
            latency_ms=100.0 + i,
            request_text=f"user: question number {i} about invoices",
            response_text=f"answer {i}",
            **kw,  # type: ignore[arg-type]
        )
        for i in range(n)
    ]
    table = TraceTable(app.state.container.store, max_text=4000)
    table.insert([table.row(trace) for trace in traces])
    return [trace.id for trace in traces]


def test_feedback_round_trip(client: TestClient, app: FastAPI, keys: dict[str, str]) -> None:
    (tid,) = _traces(app, 1)
    viewer = {"Authorization": f"Bearer {keys['viewer']}"}
    r = client.post(
        f"/api/traces/{tid}/feedback", json={"kind": "thumbs", "value": 1}, headers=viewer
    )
    assert r.status_code == 201 and r.json()["trace_id"] == tid
    r = client.post(
        f"/api/traces/{tid}/feedback",
        json={"kind": "score", "name": "helpfulness", "value": 4, "scale_min": 1, "scale_max": 5},
    )
    assert r.status_code == 201
    assert [f["kind"] for f in client.get(f"/api/traces/{tid}/feedback").json()] == [
        "thumbs",
        "score",
    ]
    missing = client.post(
        f"/api/traces/{new_id('trace')}/feedback", json={"kind": "thumbs", "value": 1}
    )
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    bad = client.post(f"/api/traces/{tid}/feedback", json={"kind": "thumbs", "value": 7})
    assert bad.status_code == 422


def test_queue_over_http(client: TestClient, app: FastAPI) -> None:
    _traces(app, 3)
    spec = {"name": "review", "label_schema": {"kind": "categorical", "choices": ["ok", "bad"]}}
    assert client.post("/api/annotation/queues", json=spec).status_code == 201
    assert client.post("/api/annotation/queues", json=spec).status_code == 409
    item = client.post("/api/annotation/queues/review/next").json()
    r = client.post(
        f"/api/annotation/queues/review/items/{item['id']}/label", json={"value": "nope"}
    )
    assert r.status_code == 422
    r = client.post(f"/api/annotation/queues/review/items/{item['id']}/label", json={"value": "ok"})
    assert r.status_code == 200 and r.json()["status"] == "labelled"
    assert client.get("/api/annotation/queues/review/counts").json() == {
        "pending": 2,
        "assigned": 0,
        "labelled": 1,
        "skipped": 0,
    }
    assert client.get("/api/annotation/queues/nope/counts").status_code == 404


def test_monitoring_and_drift(client: TestClient, app: FastAPI) -> None:
    _traces(app, 30)
    (row,) = client.get("/api/monitoring/summary", params={"since": "1h"}).json()
    assert row["deployment"] == "dep" and row["requests"] == 30
    assert row["latency_p50"] == 114.5
    series = client.get("/api/monitoring/timeseries", params={"since": "1h", "bucket": "1m"})
    assert sum(r["requests"] for r in series.json()) == 30
    bad = client.get("/api/monitoring/timeseries", params={"bucket": "5 parsecs"})
    assert bad.status_code == 422 and "duration" in bad.json()["detail"]
    now = datetime.now(UTC)
    spec = {
        "deployment": "dep",
        "reference": {
            "since": (now - timedelta(minutes=10)).isoformat(),
            "until": (now - timedelta(seconds=15)).isoformat(),
        },
        "current": {"since": (now - timedelta(seconds=15)).isoformat()},
    }
    app.state.container.drift.embedder = lambda texts: [[len(x), x.count("1")] for x in texts]
    r = client.post("/api/drift/run", json=spec)
    assert r.status_code == 201, r.text
    metrics = {x["metric"] for x in r.json()["results"]}
    assert {"input_embedding", "prompt_length", "output_length"} <= metrics
    hist = client.get("/api/drift/results", params={"deployment": "dep"}).json()
    assert {h["metric"] for h in hist} == metrics


def test_alerts_and_curation(client: TestClient, app: FastAPI) -> None:
    (tid,) = _traces(app, 1, status="error")
    rule = {"name": "errs", "metric": "error_rate", "threshold": 0.5, "comparison": ">="}
    assert client.post("/api/alerts/rules", json=rule).status_code == 201
    assert client.post("/api/alerts/rules", json={**rule, "metric": "x"}).status_code == 422
    fired = client.post("/api/alerts/evaluate").json()
    assert [e["state"] for e in fired] == ["firing"]
    assert client.post("/api/alerts/evaluate").json() == []  # deduplicated
    assert len(client.get("/api/alerts/events").json()) == 1
    assert client.delete("/api/alerts/rules/errs").status_code == 204
    assert client.delete("/api/alerts/rules/errs").status_code == 404
    client.post(
        f"/api/traces/{tid}/feedback",
        json={"kind": "correction", "correction": "mail me at a.b@example.org"},
    )
    r = client.post("/api/curate", json={"dataset": "fixes", "format": "sft"})
    assert r.status_code == 201 and r.json()["rows"] == 1 and r.json()["pii_found"] == 1
    empty = client.post("/api/curate", json={"dataset": "prefs", "format": "dpo"})
    assert empty.status_code == 422
