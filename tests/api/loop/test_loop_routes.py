"""The loop's REST routes as a team uses them: times in every form a client sends (a duration,
ISO with or without a zone, epoch seconds), no grouping at all, rollouts with a protected
champion decided by a second admin, leases held by annotators with their own keys; bad input is
always problem JSON with a 4xx, never a 500."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone

from fastapi import FastAPI
from fastapi.testclient import TestClient

from llmloop.core.feedback import FeedbackCreate
from llmloop.core.governance import ApiKeyCreate
from llmloop.core.ids import new_id
from llmloop.core.models import ModelVersionCreate
from llmloop.core.traces import TraceRecord
from llmloop.services.actors import local_actor
from llmloop.services.gateway.trace_table import TraceTable

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ME = local_actor("ops")


def _traces(app: FastAPI, specs: list[dict[str, object]]) -> list[str]:
    records = [
        TraceRecord(**{"id": new_id("trace"), "operation": "chat", "deployment": "dep", **s})  # type: ignore[arg-type]
        for s in specs
    ]
    table = TraceTable(app.state.container.store, max_text=4000)
    table.insert([table.row(r) for r in records])
    return [r.id for r in records]


def _problem(response: object, status: int) -> dict[str, object]:
    assert getattr(response, "status_code") == status, getattr(response, "text")  # noqa: B009
    assert getattr(response, "headers")["content-type"] == "application/problem+json"  # noqa: B009
    body: dict[str, object] = getattr(response, "json")()  # noqa: B009
    assert body["status"] == status and body["detail"]
    return body


def test_since_and_until_in_every_form(client: TestClient, app: FastAPI) -> None:
    _traces(app, [{"at": T0 + timedelta(minutes=i), "deployment": f"d{i % 2}"} for i in range(10)])
    start = T0 + timedelta(minutes=4)
    forms = [
        start.isoformat().replace("+00:00", "Z"),
        start.astimezone(timezone(timedelta(hours=2))).isoformat(),
        start.replace(tzinfo=None).isoformat(),
        str(int(start.timestamp())),
    ]
    until = (T0 + timedelta(hours=1)).isoformat()
    for since in forms:
        rows = client.get(
            "/api/monitoring/summary", params={"since": since, "until": until, "group_by": ""}
        ).json()
        assert [r["requests"] for r in rows] == [6], since
        assert rows[0]["deployment"] is None  # group_by= : one row of everything
    by_dep = client.get("/api/monitoring/summary", params={"since": forms[0], "until": until})
    assert [(r["deployment"], r["requests"]) for r in by_dep.json()] == [("d0", 3), ("d1", 3)]
    for bad in ("99999999999d", "99999999999999", "-1h", "2026-02-30T00:00:00",
                "0001-01-01T00:00:00+14:00"):  # fmt: skip
        _problem(client.get("/api/monitoring/summary", params={"since": bad}), 422)
        _problem(client.get("/api/drift/results", params={"since": bad}), 422)
    series = client.get(
        "/api/monitoring/timeseries",
        params={"since": forms[1], "until": until, "bucket": "1h", "group_by": ""},
    ).json()
    assert [(r["requests"], r["request_rate"]) for r in series] == [(6, 6 / (56 * 60))]
    huge = {"since": forms[0], "until": until, "bucket": "99999999999999w", "group_by": ""}
    (whole,) = client.get("/api/monitoring/timeseries", params=huge).json()
    assert whole["requests"] == 6 and whole["request_rate"] == 6 / (56 * 60)


def test_a_rollout_with_a_protected_champion(
    client: TestClient, app: FastAPI, keys: dict[str, str]
) -> None:
    c = app.state.container
    for reply in ("good", "better"):
        c.models.create_version(
            "bot", ModelVersionCreate(format="echo", params={"reply": reply}), ME
        )
    c.models.set_alias("bot", "champion", 1, ME)
    c.governance.protect("model_alias", "bot", "champion", True, ME)
    viewer = {"Authorization": f"Bearer {keys['viewer']}"}
    body = {"model": "bot", "version": 2, "weight": 0.5}
    _problem(client.post("/api/rollouts/support/start", json=body, headers=viewer), 403)
    _problem(client.post("/api/rollouts/support/start", json={**body, "weight": 1}), 422)
    _problem(client.post("/api/rollouts/support/evaluate", json={"model": "bot"}), 404)
    started = client.post("/api/rollouts/support/start", json=body)
    assert started.status_code == 200, started.text
    assert [t["name"] for t in started.json()["spec"]["targets"]] == ["champion", "challenger"]
    v1, v2 = (c.models.get_version("bot", v).id for v in (1, 2))
    ids = _traces(app, [{"at": T0 + timedelta(seconds=i), "deployment": "support",
                         "model_version_id": v1 if i % 2 else v2} for i in range(20)])  # fmt: skip
    for i, tid in enumerate(ids):
        c.feedback.add(tid, FeedbackCreate(kind="thumbs", value=0.0 if i % 2 else 1.0), ME)
    ask = {"model": "bot", "since": T0.isoformat(), "min_requests": 5}
    judged = client.post("/api/rollouts/support/evaluate", json=ask).json()
    assert judged["decision"] == "promote" and judged["run_id"] is None
    refused = _problem(
        client.post("/api/rollouts/support/evaluate", json={**ask, "apply": True}), 409
    )
    assert refused["code"] == "approval_required"
    approval = f"/api/approvals/{refused['approval_id']}"
    assert client.get(approval).json()["status"] == "pending"
    _problem(client.post(f"{approval}/approve", json={}), 403)  # not by the one who asked
    second = c.keys.create(ApiKeyCreate(name="second", role="admin"), ME).secret
    approved = client.post(
        f"{approval}/approve", json={}, headers={"Authorization": f"Bearer {second}"}
    )
    assert approved.json()["status"] == "approved"
    done = client.post("/api/rollouts/support/evaluate", json={**ask, "apply": True})
    assert (
        done.status_code == 200 and done.json()["decision"] == "promote" and done.json()["run_id"]
    )
    assert c.models.get("bot").aliases["champion"] == 2
    dep = client.get("/api/deployments/support").json()
    assert [t["name"] for t in dep["spec"]["targets"]] == ["champion"]
    _problem(client.post("/api/rollouts/support/rollback", json={"model": "bot"}), 409)
    client.post("/api/rollouts/support/start", json={**body, "version": 1})
    back = client.post("/api/rollouts/support/rollback", json={"model": "bot", "reason": "slo"})
    assert back.json()["decision"] == "rollback" and back.json()["reason"] == "slo"
    graph = client.get(f"/api/lineage/{v2}", params={"direction": "down"}).json()
    assert {n["label"] for n in graph["nodes"] if n["type"] == "run"} == {"rollout/support"}


def test_annotators_keep_their_leases(
    client: TestClient, app: FastAPI, keys: dict[str, str]
) -> None:
    _traces(app, [{"at": T0 + timedelta(seconds=i)} for i in range(2)])
    spec = {"name": "q", "label_schema": {"kind": "categorical", "choices": ["ok", "bad"]}}
    assert client.post("/api/annotation/queues", json=spec).status_code == 201
    editor = {"Authorization": f"Bearer {keys['editor']}"}
    mine = client.post("/api/annotation/queues/q/next", params={"lease_s": 3600}).json()
    assert mine["label"] is None and mine["assignee"] == "admin-key"
    time.sleep(0.01)  # asking for a 1 ms lease takes nobody's 1 h lease
    theirs = client.post("/api/annotation/queues/q/next", params={"lease_s": 0.001}, headers=editor)
    assert theirs.json()["id"] != mine["id"]
    again = client.post("/api/annotation/queues/q/next", params={"lease_s": 60}, headers=editor)
    assert again.json()["id"] == theirs.json()["id"]  # their own, leased again
    viewer = {"Authorization": f"Bearer {keys['viewer']}"}
    done = client.post("/api/annotation/queues/q/next", headers=viewer)
    assert done.status_code == 204 and done.content == b""
    _problem(
        client.post(f"/api/annotation/queues/q/items/{mine['id']}/label", json={"value": "ok"},
                    headers=viewer),
        409,
    )  # fmt: skip
