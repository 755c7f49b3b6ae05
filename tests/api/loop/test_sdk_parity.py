"""The SDK over HTTP answers as the SDK in process, on the same store: the same values for the
loop's methods (feedback, queues, monitoring, alerts, drift, curation, rollouts) and the
registry's, and the same ``llmloop.errors`` exception (class, detail, extra) for the same
mistake, whichever side finds it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel

from llmloop.client import Client
from llmloop.client.transport import HttpTransport, LocalTransport
from llmloop.core.ids import new_id
from llmloop.core.traces import TraceRecord
from llmloop.errors import LlmloopError
from llmloop.services.actors import Actor
from llmloop.services.gateway.trace_table import TraceTable

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
MASKED = ("id", "name", "created_at", "trace_id", "queue_id", "updated_at", "item_ref")
Pair = tuple[Client, Client]


@pytest.fixture
def pair(app: FastAPI, keys: dict[str, str]) -> Iterator[Pair]:
    """(in process, over HTTP) on the app's one store, as the same admin."""
    local = Client.__new__(Client)
    transport = LocalTransport.__new__(LocalTransport)
    transport.container, transport.actor = app.state.container, Actor("admin-key", "admin")
    local._t = transport
    with TestClient(app) as tc:
        http = Client.__new__(Client)
        http._t = HttpTransport("http://testserver", keys["admin"], client=tc)
        yield local, http


def _traces(app: FastAPI, n: int) -> list[str]:
    records = [
        TraceRecord(
            id=new_id("trace"), at=T0 + timedelta(seconds=7 * i, microseconds=999_700),
            operation="chat", deployment="dep" if i % 3 else "other",
            model_version_id=f"mv_{i % 2}", key_id=f"key_{i % 2}", latency_ms=10.0 + i * i,
            ttft_ms=1.0 + i, input_tokens=i, output_tokens=2 * i, cost=0.001 * i,
            status="error" if i % 5 == 0 else "ok",
            guard_verdicts=[{"action": "block"}] if i % 7 == 0 else None,
            request_text=f"user: question {i} about an invoice", response_text=f"answer {i}",
        )
        for i in range(n)
    ]  # fmt: skip
    table = TraceTable(app.state.container.store, max_text=4000)
    table.insert([table.row(r) for r in records])
    return [r.id for r in records]


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _outcome(client: Client, method: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
    try:
        return ("ok", _plain(getattr(client, method)(*args, **kwargs)))
    except LlmloopError as exc:
        extra = {k: v for k, v in exc.extra.items() if k != "errors"}
        return ("error", type(exc).__name__, exc.detail, extra)


def _same(pair: Pair, method: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
    local, http = pair
    here, there = _outcome(local, method, *args, **kwargs), _outcome(http, method, *args, **kwargs)
    assert here == there, f"{method}{args}{kwargs}"
    return here


def test_reads_and_refusals_are_the_same_both_ways(app: FastAPI, pair: Pair) -> None:
    ids = _traces(app, 40)
    local, _ = pair
    local.add_feedback(ids[1], "thumbs", value=1)
    local.add_feedback(ids[2], "score", name="help", value=2, scale_min=1, scale_max=5)
    local.create_queue("review", {"kind": "categorical", "choices": ["ok", "bad"]})
    local.create_alert_rule("errors", "error_rate", 0.1)
    window = {"since": T0.isoformat(), "until": (T0 + timedelta(minutes=5)).isoformat()}
    epoch = str(int(T0.timestamp()))
    calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
        ("monitoring_summary", (), window),
        ("monitoring_summary", (), {**window, "group_by": []}),
        ("monitoring_summary", (), {**window, "group_by": ["model_version", "key"]}),
        ("monitoring_summary", (), {**window, "group_by": ["prompt_version"]}),
        ("monitoring_summary", (), {**window, "group_by": ["deployment", "deployment"]}),
        ("monitoring_summary", (), {**window, "deployment": "dep"}),
        ("monitoring_summary", (), {"since": epoch, "until": T0.astimezone().isoformat()}),
        ("monitoring_summary", (), {"since": T0.replace(tzinfo=None), "until": T0 + HOUR}),
        ("monitoring_timeseries", (), {**window, "bucket": "1m"}),
        ("monitoring_timeseries", (), {**window, "bucket": 7, "group_by": []}),
        ("monitoring_summary", (), {"since": "99999999999d"}),
        ("monitoring_summary", (), {"since": "2026-13-01"}),
        ("monitoring_summary", (), {"since": window["until"], "until": window["since"]}),
        ("monitoring_summary", (), {"group_by": ["user"]}),
        ("monitoring_timeseries", (), {"since": "1000d", "bucket": "1s"}),
        ("monitoring_timeseries", (), {"bucket": "5 parsecs"}),
        ("list_feedback", (), {}),
        ("list_feedback", (ids[2],), {}),
        ("list_feedback", (new_id("trace"),), {}),
        ("list_feedback", ("tr_nope",), {}),
        ("list_feedback", (), {"limit": 0}),
        ("add_feedback", (new_id("trace"), "thumbs"), {"value": 1}),
        ("add_feedback", (ids[0], "thumbs"), {"value": 3}),
        ("add_feedback", (ids[0], "label"), {"value": float("nan")}),
        ("list_queues", (), {}),
        ("get_queue", ("review",), {}),
        ("queue_counts", ("nope",), {}),
        ("get_queue", ("a/counts",), {}),
        ("next_item", ("review",), {"lease_s": 0}),
        ("label_item", ("review", 10_000, "ok"), {}),
        ("create_queue", ("review", {"kind": "categorical", "choices": ["a", "b"]}), {}),
        ("list_alert_rules", (), {}),
        ("get_alert_rule", ("nope",), {}),
        ("alert_events", (), {"rule": "nope"}),
        ("create_alert_rule", ("x", "latency_p95", float("inf")), {}),
        ("create_alert_rule", ("x", "no_such_metric", 1), {}),
        ("drift_results", (), {"since": "garbage"}),
        ("run_drift", ("dep", {"dataset": "d", "since": T0}, {"since": T0}), {}),
        ("curate", ("fixes", "sft"), {}),
        ("curate", ("fixes", "sft"), {"pii": "pseudonymise"}),
        ("evaluate_rollout", ("dep", "bot"), {}),
        ("start_rollout", ("dep", "bot", 1), {"weight": 1.0}),
        ("get_dataset", ("a/versions",), {}),
        ("get_dataset", ("x?limit=1",), {}),
        ("get_run", ("nosuch",), {}),
        ("get_model_version", ("bot", 0), {}),
        ("list_datasets", (), {"limit": 5000}),
        ("list_runs", (), {"kind": "bogus"}),
        ("list_approvals", (), {"status": "bogus"}),
        ("lineage", ("nosuch",), {}),
        ("create_dataset", ("bad name",), {}),
        ("set_model_stage", ("bot", 1, "bogus"), {}),
    ]  # fmt: skip
    for method, args, kwargs in calls:
        _same(pair, method, *args, **kwargs)
    (everything,) = local.monitoring_summary(**window, group_by=[])
    assert everything.requests == 40  # every trace of the window, in one row
    assert _same(pair, "get_dataset", "a/versions")[1] == "InvalidInputError"


def test_writes_give_the_same_values_both_ways(app: FastAPI, pair: Pair) -> None:
    ids = _traces(app, 6)
    local, http = pair

    def masked(value: BaseModel) -> dict[str, Any]:
        data = value.model_dump(mode="json")
        if isinstance(data.get("spec"), dict):
            data["spec"] = {k: v for k, v in data["spec"].items() if k != "name"}
        return {k: v for k, v in data.items() if k not in MASKED}

    schema = {"kind": "numeric", "min": 1, "max": 5}
    queues = [
        c.create_queue(n, schema, {"deployment": "dep"}) for c, n in ((local, "ql"), (http, "qh"))
    ]
    assert masked(queues[0]) == masked(queues[1])
    items = [c.next_item(n) for c, n in ((local, "ql"), (http, "qh"))]
    assert items[0] is not None and items[1] is not None
    assert masked(items[0]) == masked(items[1])
    labelled = [
        c.label_item(n, i.id, 4) for c, n, i in ((local, "ql", items[0]), (http, "qh", items[1]))
    ]  # type: ignore[union-attr]
    assert masked(labelled[0]) == masked(labelled[1]) and labelled[0].label == {
        "value": 4.0,
        "text": "",
    }
    fb = [c.add_feedback(ids[0], "correction", correction="right") for c in (local, http)]
    assert masked(fb[0]) == masked(fb[1])
    rules = [
        c.create_alert_rule(n, "requests", 0, window_s=60) for c, n in ((local, "rl"), (http, "rh"))
    ]
    assert masked(rules[0]) == masked(rules[1])
    assert local.refill_queue("ql") == http.refill_queue("qh") == 0
    duplicate = [_outcome(c, "curate", "fixes", "sft") for c in (local, http)]
    assert duplicate[0][0] == "ok" and duplicate[1][:2] == ("error", "ConflictError")
    assert duplicate[1][3] == {"existing_version": 1}  # the problem's extra fields come back
    local.delete_alert_rule("rl")
    http.delete_alert_rule("rh")
    assert local.list_alert_rules() == http.list_alert_rules() == []
    for client in pair:
        assert client.evaluate_alerts() == []


def test_ingest_uploads_a_file_and_names_a_missing_one_alike(pair: Pair, tmp_path: Any) -> None:
    """Over HTTP the SDK streams the file to the ingest route; a path that is not there is the
    same InvalidInputError as in process, not a FileNotFoundError traceback."""
    local, http = pair
    data = tmp_path / "tickets.jsonl"
    data.write_text('{"text": "a"}\n{"text": "b"}\n')
    result = http.ingest(str(data), "uploaded")
    assert result["version"]["row_count"] == 2
    assert local.get_dataset("uploaded").name == "uploaded"
    missing = str(tmp_path / "missing.jsonl")
    there, here = _outcome(http, "ingest", missing, "d"), _outcome(local, "ingest", missing, "d")
    assert there[:2] == here[:2] == ("error", "InvalidInputError")
    assert "no such file" in there[2] and "no such file" in here[2]
