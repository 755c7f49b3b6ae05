"""Sign-in, sign-out, redirects, error pages and the overview page of the dashboard."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from llmloop.ui.charts import bar_chart, line_chart


def test_root_leads_to_the_dashboard_and_pages_need_a_sign_in(app: FastAPI) -> None:
    with TestClient(app, follow_redirects=False) as tc:
        assert tc.get("/").headers["location"] == "/ui/"
        response = tc.get("/ui/?x=1")
        assert response.status_code == 303
        assert response.headers["location"] == "/ui/login?next=/ui/%3Fx%3D1"
        form = tc.get("/ui/login?next=/ui/models/")
        assert form.status_code == 200
        assert 'name="next" value="/ui/models/"' in form.text


def test_sign_in_sets_a_strict_http_only_cookie(app: FastAPI, keys: dict[str, str]) -> None:
    with TestClient(app, follow_redirects=False) as tc:
        response = tc.post("/ui/login", data={"key": keys["viewer"], "next": "/ui/prompts/"})
        assert response.status_code == 303
        assert response.headers["location"] == "/ui/prompts/"
        cookie = response.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        page = tc.get("/ui/")
        assert page.status_code == 200
        assert "viewer-key" in page.text and "Overview" in page.text


def test_a_wrong_key_is_refused_on_the_form(app: FastAPI) -> None:
    with TestClient(app, follow_redirects=False) as tc:
        response = tc.post("/ui/login", data={"key": "llm_nope_nope"})
        assert response.status_code == 401
        assert "invalid API key" in response.text
        assert "set-cookie" not in response.headers
        assert tc.post("/ui/login", data={}).status_code == 401


def test_next_never_leaves_the_dashboard(app: FastAPI, keys: dict[str, str]) -> None:
    with TestClient(app, follow_redirects=False) as tc:
        for target in (
            "https://evil.example/",
            "//evil.example/ui",
            "/api/models",
            "/ui\\x",
            "/uix",
        ):
            response = tc.post("/ui/login", data={"key": keys["admin"], "next": target})
            assert response.headers["location"] == "/ui/", target
            assert "evil" not in response.headers["location"]


def test_a_revoked_key_signs_the_browser_out(app: FastAPI, ui: TestClient) -> None:
    assert ui.get("/ui/").status_code == 200
    service = app.state.container.keys
    from llmloop.services.actors import local_actor

    admin = next(k for k in service.list() if k.name == "admin-key")
    service.revoke(admin.id, local_actor())
    service._cache.clear()
    assert ui.get("/ui/").status_code == 303


def test_sign_out_forgets_the_key(ui: TestClient) -> None:
    response = ui.post("/ui/logout")
    assert response.status_code == 303
    assert ui.get("/ui/").status_code == 303


def test_a_form_posted_from_another_site_is_refused(app: FastAPI, keys: dict[str, str]) -> None:
    with TestClient(app, follow_redirects=False) as tc:
        response = tc.post(
            "/ui/login", data={"key": keys["admin"]}, headers={"Origin": "https://evil.example"}
        )
        assert response.status_code == 403
        assert "another site" in response.text
        assert response.headers["content-type"].startswith("text/html")


def test_overview_on_an_empty_home(ui: TestClient) -> None:
    page = ui.get("/ui/")
    assert page.status_code == 200
    assert "No traffic in the last 24 hours yet" in page.text
    assert ui.get("/ui/static/ui.css").status_code == 200


def test_charts_escape_labels_and_draw_gaps() -> None:
    svg = line_chart([("<b>x</b>", [(0, 1.0), (1, None), (2, 3.0)])], title="t<")
    assert "<b>" not in svg and "&lt;b&gt;" in svg
    assert svg.count("M") >= 2  # a gap starts a new line
    assert "no data" in line_chart([("a", [])])
    assert "&lt;" in bar_chart([("<a>", 2.0), ("b", -1.0)])


def test_pages_send_a_strict_content_security_policy(ui: TestClient) -> None:
    headers = ui.get("/ui/").headers
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"


def test_a_flash_message_shows_once(ui: TestClient) -> None:
    from starlette.requests import Request

    from llmloop.ui.web import FLASH_COOKIE, redirect

    request = Request({"type": "http", "path": "/ui/models", "headers": []})
    response = redirect(request, "/ui/", "Alias «champion» moved, 100 %")
    cookie = response.headers["set-cookie"]
    value = cookie.split(";")[0].split("=", 1)[1]
    ui.cookies.set(FLASH_COOKIE, value, path="/ui")
    page = ui.get("/ui/")
    assert "Alias «champion» moved, 100 %" in page.text
    assert FLASH_COOKIE in page.headers["set-cookie"]  # deleted for the next page


def test_errors_under_ui_are_pages_and_elsewhere_stay_json(ui: TestClient) -> None:
    page = ui.get("/ui/no/such/page")
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    assert "no route GET /ui/no/such/page" in page.text
    api = ui.get("/api/no/such/thing")
    assert api.headers["content-type"] == "application/problem+json"
    assert ui.get("/ui/static/nope.css").headers["content-type"].startswith("text/html")
