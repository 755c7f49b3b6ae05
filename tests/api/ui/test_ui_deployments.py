"""Dashboard pages of deployments: the list, one deployment (routes resolved now and live, the last
hour, latest traces, spec), and the editor actions reload and delete."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from llmloop.core.deployments import DeploymentSpec
from llmloop.core.models import ModelVersionCreate
from llmloop.core.traces import TraceRecord, new_trace_id
from llmloop.services.actors import local_actor
from llmloop.services.container import Container
from llmloop.services.gateway.trace_table import TraceTable

ME = local_actor("ops")
HOSTILE = "<script>alert('x')</script>"
ECHO = {"engine": {"kind": "echo", "model": "echo", "options": {"prefix": "E:"}}}


@pytest.fixture
def app(threaded_app: FastAPI) -> FastAPI:
    return threaded_app


def container(app: FastAPI) -> Container:
    c: Container = app.state.container
    return c


def deploy(app: FastAPI, spec: dict[str, Any], source: str = "api") -> None:
    container(app).deployments.apply(DeploymentSpec.model_validate(spec), ME, source=source)


def bot(app: FastAPI, versions: int = 2) -> list[str]:
    """Model 'bot' with echo versions 1..n, alias champion -> 1; returns the version ids."""
    c = container(app)
    ids = [
        c.models.create_version("bot", ModelVersionCreate(format="echo"), ME).id
        for _ in range(versions)
    ]
    c.models.set_alias("bot", "champion", 1, ME)
    return ids


def canary_spec() -> dict[str, Any]:
    return {
        "name": "support",
        "description": f"Answers customers {HOSTILE}",
        "targets": [
            {"model": "bot", "alias": "champion", "weight": 3},
            {**ECHO, "weight": 1, "name": f"<i>{HOSTILE}</i>"},
        ],
        "shadow": {"model": "bot", "version": 2},
        "fallbacks": [{"model": "bot", "alias": "latest"}],
        "sticky": True,
        "timeout_s": 7,
    }


def write(app: FastAPI, *records: TraceRecord) -> None:
    table = TraceTable(container(app).store, max_text=100_000)
    table.insert([table.row(r) for r in records])


def trace(deployment: str, **fields: Any) -> TraceRecord:
    base: dict[str, Any] = {"id": new_trace_id(), "at": datetime.now(UTC), "operation": "chat",
                            "deployment": deployment, "latency_ms": 20.0, "input_tokens": 2,
                            "output_tokens": 3, "request_text": "user: hello there"}  # fmt: skip
    return TraceRecord(**{**base, **fields})


def follow(ui: TestClient, response: Any) -> str:
    assert response.status_code == 303, response.text
    return ui.get(response.headers["location"]).text


# --- the list -----------------------------------------------------------------------------


def test_empty_list_says_how_to_declare_one(ui: TestClient) -> None:
    page = ui.get("/ui/deployments")
    assert page.status_code == 200
    assert "No deployments yet" in page.text and "llmloop deployments apply" in page.text


def test_list_shows_routes_resolved_now(app: FastAPI, ui: TestClient) -> None:
    v1, v2 = bot(app)
    deploy(app, canary_spec())
    deploy(app, {"name": "from-yaml.v2", "targets": [ECHO]}, source="file")
    page = ui.get("/ui/deployments")
    assert page.status_code == 200
    body = page.text.split("<tbody>")[1]
    rows = body.split("</tr>")
    assert "from-yaml.v2" in rows[0] and "support" in rows[1]  # by name
    support = rows[1]
    for shown in ("75 %", "25 %", "bot</a> @ <code>champion</code>", f'title="{v1}">bot v1',
                  f'title="{v2}">bot v2', "engine <code>echo:echo</code>", ">yes<",
                  'href="/ui/deployments/support"'):  # fmt: skip
        assert shown in support, shown
    assert "badge api" in body and "badge yaml" in body
    assert 'href="/ui/deployments/from-yaml.v2"' in body
    assert "just now" in body  # updated, from the audit log


def test_list_and_detail_escape_descriptions_and_target_names(app: FastAPI, ui: TestClient) -> None:
    bot(app)
    deploy(app, canary_spec())
    for url in ("/ui/deployments", "/ui/deployments/support"):
        text = ui.get(url).text
        assert HOSTILE not in text and "<i>" not in text
        assert "&lt;script&gt;" in text


def test_an_unresolvable_target_says_why(app: FastAPI, ui: TestClient) -> None:
    deploy(app, {"name": "ghostly", "targets": [{"model": "ghost", "alias": "champion"}]})
    for url in ("/ui/deployments", "/ui/deployments/ghostly"):
        page = ui.get(url)
        assert page.status_code == 200
        assert "unresolved" in page.text and "no model named &#39;ghost&#39;" in page.text


# --- one deployment -----------------------------------------------------------------------


def test_detail_shows_spec_routes_hour_and_traces(app: FastAPI, ui: TestClient) -> None:
    v1, v2 = bot(app)
    deploy(app, canary_spec())
    now = datetime.now(UTC)
    write(
        app,
        trace("support", model_version_id=v1, request_text="user: where is my parcel?"),
        trace("support", model_version_id=v1, status="error", error="boom", http_status=502),
        trace("support", model_version_id=v2, at=now - timedelta(minutes=10), cost=0.5),
        trace("support", at=now - timedelta(hours=3)),  # outside the last hour
        trace("other"),
        trace("support", kind="shadow", request_text="user: a shadow copy"),
    )
    page = ui.get("/ui/deployments/support")
    assert page.status_code == 200
    text = page.text
    routes = text.split("<h2>Routes</h2>")[1].split("</table>")[0]
    for shown in ("badge primary", "badge fallback", "badge canary", "75 %", "25 %",
                  "bot v1", "bot v2", "bot@champion", "bot@latest"):  # fmt: skip
        assert shown in routes, shown
    hour = text.split("<h2>Last hour</h2>")[1].split("<h2>")[0]
    assert '<div class="value">3</div><div class="label">requests</div>' in hour
    assert "33.3 %" in hour  # one error out of three
    assert "$0.5" in hour
    assert "bot v1" in hour and "bot v2" in hour  # per model version
    latest = text.split("<h2>Latest requests</h2>")[1].split("<h2>")[0]
    assert latest.count('href="/ui/traces/tr_') == 4 and "where is my parcel?" in latest
    assert "a shadow copy" not in latest  # requests only; the traces page lists the copies
    assert 'href="/ui/traces?deployment=support"' in latest
    spec = text.split("<h2>Spec</h2>")[1]
    assert "&#34;sticky&#34;: true" in spec and "&#34;timeout_s&#34;: 7" in spec
    policies = text.split("<h2>Policies</h2>")[1].split("<h2>")[0]
    assert "7 s per attempt" in policies and "same user" in policies


def test_detail_empty_hour_and_no_traces(app: FastAPI, ui: TestClient) -> None:
    deploy(app, {"name": "quiet", "targets": [ECHO]})
    text = ui.get("/ui/deployments/quiet").text
    assert "No requests in the last hour yet" in text
    assert "No traces yet" in text
    assert "direct engine" in text
    assert "Macro" not in text  # no name of this page shadows one of the layout's


def test_unknown_deployment_is_a_404_page(ui: TestClient) -> None:
    for name in ("nope", "x y", "<b>"):
        page = ui.get(f"/ui/deployments/{name}")
        assert page.status_code == 404
        assert "no deployment named" in page.text and "<b>" not in page.text.split("<main>")[1]
    assert ui.post("/ui/deployments/nope/reload").status_code == 404
    assert ui.post("/ui/deployments/nope/delete").status_code == 404


# --- actions ------------------------------------------------------------------------------


def test_reload_follows_a_moved_alias(app: FastAPI, editor_ui: TestClient) -> None:
    v1, v2 = bot(app)
    deploy(app, {"name": "support", "targets": [{"model": "bot", "alias": "champion"}]})
    page = editor_ui.get("/ui/deployments/support").text
    assert 'action="/ui/deployments/support/reload"' in page
    response = editor_ui.post("/ui/deployments/support/reload")
    assert response.headers["location"] == "/ui/deployments/support"
    assert f"Reloaded &#39;support&#39;: primary0:bot@champion → {v1}." in follow(
        editor_ui, response
    )
    manager = container(app).gateway.manager
    assert [s.resolved.version_id for s in manager.runtimes["support"].slots()] == [v1]

    container(app).models.set_alias("bot", "champion", 2, ME)
    stale = editor_ui.get("/ui/deployments/support").text
    assert "reload pending" in stale and "bot v2" in stale
    assert "Reloaded" in follow(editor_ui, editor_ui.post("/ui/deployments/support/reload"))
    assert [s.resolved.version_id for s in manager.runtimes["support"].slots()] == [v2]
    assert "reload pending" not in editor_ui.get("/ui/deployments/support").text


def test_a_failing_reload_is_a_message_on_the_page(app: FastAPI, ui: TestClient) -> None:
    deploy(app, {"name": "ghostly", "targets": [{"model": "ghost"}]})
    response = ui.post("/ui/deployments/ghostly/reload")
    assert response.headers["location"] == "/ui/deployments/ghostly"
    assert "e:" in response.headers["set-cookie"]
    page = follow(ui, response)
    assert 'class="flash error"' in page and "Reload failed" in page and "ghost" in page
    assert "ghostly" not in container(app).gateway.manager.runtimes


def test_delete_removes_the_deployment_and_stops_serving_it(
    app: FastAPI, ui: TestClient, keys: dict[str, str]
) -> None:
    deploy(app, {"name": "doomed", "targets": [ECHO]})
    ask = {"model": "doomed", "messages": [{"role": "user", "content": "hi"}]}
    auth = {"Authorization": f"Bearer {keys['admin']}"}
    assert ui.post("/v1/chat/completions", json=ask, headers=auth).status_code == 200
    manager = container(app).gateway.manager
    assert "doomed" in manager.runtimes
    page = ui.get("/ui/deployments/doomed").text
    assert 'data-confirm="Delete deployment doomed?' in page
    response = ui.post("/ui/deployments/doomed/delete")
    assert response.headers["location"] == "/ui/deployments"
    assert "Deleted deployment &#39;doomed&#39;." in follow(ui, response)
    assert container(app).deployments.find("doomed") is None
    assert "doomed" not in manager.runtimes
    assert ui.post("/v1/chat/completions", json=ask, headers=auth).status_code == 404
    audit = container(app).governance.audit(limit=1000)
    assert any(e.action == "deployment.delete" and e.actor == "admin-key" for e in audit)
    assert ui.get("/ui/deployments/doomed").status_code == 404


def test_deleting_a_yaml_deployment_warns_it_comes_back(app: FastAPI, ui: TestClient) -> None:
    deploy(app, {"name": "declared", "targets": [ECHO]}, source="file")
    page = follow(ui, ui.post("/ui/deployments/declared/delete"))
    assert "comes back when the server next loads its deployments file" in page


def test_a_viewer_sees_no_actions_and_is_refused_them(app: FastAPI, viewer_ui: TestClient) -> None:
    deploy(app, {"name": "keep", "targets": [ECHO]})
    page = viewer_ui.get("/ui/deployments/keep")
    assert page.status_code == 200
    assert "/reload" not in page.text and "/delete" not in page.text
    assert "Editors can reload or delete" in page.text
    for action in ("reload", "delete"):
        refused = viewer_ui.post(f"/ui/deployments/keep/{action}")
        assert refused.status_code == 403
        assert refused.headers["content-type"].startswith("text/html")
        assert "needs &#39;editor&#39; or higher" in refused.text
    assert container(app).deployments.find("keep") is not None
    assert "keep" not in container(app).gateway.manager.runtimes


def test_actions_from_another_site_are_refused(app: FastAPI, ui: TestClient) -> None:
    deploy(app, {"name": "keep", "targets": [ECHO]})
    evil = {"Origin": "https://evil.example"}
    assert ui.post("/ui/deployments/keep/delete", headers=evil).status_code == 403
    assert ui.post("/ui/deployments/keep/reload", headers=evil).status_code == 403
    assert container(app).deployments.find("keep") is not None


def test_pages_need_a_sign_in(app: FastAPI) -> None:
    deploy(app, {"name": "keep", "targets": [ECHO]})
    with TestClient(app, follow_redirects=False) as tc:
        assert tc.get("/ui/deployments").status_code == 303
        assert tc.get("/ui/deployments/keep").status_code == 303
        assert tc.post("/ui/deployments/keep/delete").status_code == 303
    assert container(app).deployments.find("keep") is not None
