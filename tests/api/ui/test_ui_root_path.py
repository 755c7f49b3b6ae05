"""The dashboard behind a reverse proxy that serves llmloop under a path prefix and strips it
(``llmloop serve --root-path /llmloop``): every link, form, redirect, asset and cookie path
carries the prefix; without a root path nothing changes.

The client sends what uvicorn passes on with ``--root-path``: ``root_path`` in the scope and the
path with the prefix in front.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from html import unescape
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from llmloop.core.alerts import AlertRuleCreate
from llmloop.core.datasets import DatasetVersionCreate
from llmloop.core.deployments import DeploymentSpec
from llmloop.core.feedback import LabelSchema, QueueCreate
from llmloop.core.governance import ApprovalCreate
from llmloop.core.models import ModelVersionCreate
from llmloop.core.prompts import PromptVersionCreate
from llmloop.core.runs import MetricPoint, RunCreate, RunInput
from llmloop.core.traces import TraceRecord, new_trace_id
from llmloop.services.actors import local_actor
from llmloop.services.container import Container
from llmloop.services.gateway.trace_table import TraceTable

ROOT = "/llmloop"
ME = local_actor("ops")
ATTRS = re.compile(r'\b(?:href|src|action)="([^"]*)"')


@pytest.fixture
def app(threaded_app: FastAPI) -> FastAPI:
    return threaded_app


def seed(c: Container) -> dict[str, str]:
    """Something on every page: lineage, labels, aliases, traces, a rule, a queue, an approval."""
    dsv = c.datasets.create_version("docs", DatasetVersionCreate(rows=[{"text": "hi"}]), ME)
    for template in ("Hi {{ name }}", "Hello {{ name }}"):
        pv = c.prompts.create_version("greet", PromptVersionCreate(template=template), ME)
    c.prompts.set_label("greet", "production", 1, ME)
    inputs = [RunInput(id=dsv.id, role="train"), RunInput(id=pv.id)]
    run = c.runs.create(RunCreate(name="sft", kind="finetune", inputs=inputs), ME)
    points = [MetricPoint(key="loss", value=2.0 - i / 10, step=i) for i in range(3)]
    c.runs.log_metrics(run.id, points, ME)
    c.runs.finish(run.id, "finished", ME)
    mv = c.models.create_version("bot", ModelVersionCreate(format="echo", run_id=run.id), ME)
    c.models.create_version("bot", ModelVersionCreate(format="echo", base_model=mv.id), ME)
    c.models.set_alias("bot", "champion", 1, ME)
    judged = [RunInput(id=run.id, role="candidate"), RunInput(id=mv.id, role="model")]
    c.runs.create(RunCreate(name="eval", kind="eval", inputs=judged), ME)
    c.runs.create(RunCreate(name="trial", kind="trial", parent_id=run.id), ME)
    c.governance.protect("model_alias", "bot", "champion", True, local_actor("root"))
    c.governance.request(
        ApprovalCreate(kind="model_alias", name="bot", label="champion", version=2), ME
    )
    spec = {"name": "chat", "targets": [{"model": "bot", "alias": "champion"}]}
    c.deployments.apply(DeploymentSpec.model_validate(spec), ME, source="api")
    trace = TraceRecord(
        id=new_trace_id(), at=datetime.now(UTC), operation="chat", deployment="chat",
        model_version_id=mv.id, request_text="user: hi", response_text="hello",
    )  # fmt: skip
    table = TraceTable(c.store, max_text=10_000)
    table.insert([table.row(trace)])
    rule = {"name": "slow", "metric": "latency_p95", "threshold": 100, "deployment": "chat"}
    c.alerts.create(AlertRuleCreate.model_validate(rule), ME)
    schema = LabelSchema(kind="categorical", name="quality", choices=["good", "bad"])
    c.annotation.create_queue(QueueCreate(name="review", label_schema=schema), ME)
    return {"run": run.id, "mv": mv.id, "trace": trace.id}


@pytest.fixture
def proxied(app: FastAPI, keys: dict[str, str]) -> Iterator[TestClient]:
    """Signed in to the dashboard at /llmloop/ui, as through the proxy."""
    with TestClient(app, root_path=ROOT, follow_redirects=False) as tc:
        response = tc.post(f"{ROOT}/ui/login", data={"key": keys["admin"], "next": f"{ROOT}/ui/"})
        assert response.status_code == 303, response.text
        assert response.headers["location"] == f"{ROOT}/ui/"
        yield tc


def cookie_path(header: str) -> str:
    found = re.search(r"[Pp]ath=([^;]*)", header)
    assert found, header
    return found.group(1)


def addresses(html: str) -> list[str]:
    return [unescape(a) for a in ATTRS.findall(html)]


def test_a_visitor_is_sent_to_sign_in_and_back_under_the_prefix(
    app: FastAPI, keys: dict[str, str]
) -> None:
    with TestClient(app, root_path=ROOT, follow_redirects=False) as tc:
        assert tc.get(f"{ROOT}/").headers["location"] == f"{ROOT}/ui/"
        # A path, not Starlette's slash redirect to the Host the server got (the upstream's).
        upstream = {"host": "127.0.0.1:8400"}
        assert tc.get(f"{ROOT}/ui", headers=upstream).headers["location"] == f"{ROOT}/ui/"
        response = tc.get(f"{ROOT}/ui/models?limit=5")
        assert response.status_code == 303
        login = response.headers["location"]
        assert login == f"{ROOT}/ui/login?next={ROOT}/ui/models%3Flimit%3D5"
        form = tc.get(login)
        assert form.status_code == 200
        assert f'action="{ROOT}/ui/login"' in form.text
        assert f'name="next" value="{ROOT}/ui/models?limit=5"' in form.text
        signed = tc.post(
            f"{ROOT}/ui/login", data={"key": keys["viewer"], "next": f"{ROOT}/ui/models?limit=5"}
        )
        assert signed.headers["location"] == f"{ROOT}/ui/models?limit=5"
        assert cookie_path(signed.headers["set-cookie"]) == ROOT
        assert tc.get(f"{ROOT}/ui/models").status_code == 200  # the cookie rides along
        # A target outside the dashboard, the prefix left off included, is refused.
        for target in ("/ui/models", f"{ROOT}/api/models", "https://evil.example/llmloop/ui/"):
            again = tc.post(f"{ROOT}/ui/login", data={"key": keys["viewer"], "next": target})
            assert again.headers["location"] == f"{ROOT}/ui/", target
        out = tc.post(f"{ROOT}/ui/logout")
        assert out.headers["location"] == f"{ROOT}/ui/login"
        assert cookie_path(out.headers["set-cookie"]) == ROOT
        assert tc.get(f"{ROOT}/ui/models").status_code == 303


def _crawl(tc: TestClient, start: str, limit: int = 150) -> dict[str, str]:
    """Every page reachable by GET links from ``start`` (up to ``limit``): path -> html."""
    seen: dict[str, str] = {}
    queue = [start]
    while queue and len(seen) < limit:
        url = queue.pop(0)
        if url in seen:
            continue
        page = tc.get(url)
        assert page.status_code < 500, (url, page.text[-600:])
        if page.is_redirect:
            location = page.headers["location"]
            assert location.startswith(f"{ROOT}/"), (url, location)
            seen[url] = ""
            queue.append(location)
            continue
        assert "no route GET" not in page.text, url
        seen[url] = page.text if page.headers["content-type"].startswith("text/html") else ""
        for address in addresses(seen[url]):
            target = address.split("#")[0]
            if target and "/static/" not in target and "/logout" not in target:
                queue.append(target)
    return seen


def test_every_address_on_every_page_carries_the_prefix(app: FastAPI, proxied: TestClient) -> None:
    ids = seed(app.state.container)
    starts = [f"{ROOT}/ui/", f"{ROOT}/ui/governance/lineage/{ids['run']}",
              f"{ROOT}/ui/traces/{ids['trace']}", f"{ROOT}/ui/annotation/review"]  # fmt: skip
    # Lists of one row per page, so that their pagers are drawn too.
    starts += [f"{ROOT}/ui/{noun}?limit=1" for noun in ("models", "datasets", "prompts", "runs",
                                                        "traces", "governance")]  # fmt: skip
    pages: dict[str, str] = {}
    for start in starts:
        pages.update(_crawl(proxied, start))
    assert len(pages) > 40
    sections = {urlsplit(p).path.split("/")[3] for p in pages if p.count("/") > 2}
    assert {"models", "datasets", "prompts", "runs", "deployments", "traces", "monitoring",
            "alerts", "annotation", "governance", "keys"} <= sections  # fmt: skip
    assert {
        f"{ROOT}/ui/models/bot/versions/1/card",
        f"{ROOT}/ui/models/bot/versions/1/card.md",
    } <= set(pages)
    for url, html in pages.items():
        for address in addresses(html):
            if address.startswith("#"):
                continue
            assert address.startswith(f"{ROOT}/"), (url, address)
        footer = html.split("<footer>")[-1]
        if html:
            assert f"<code>{ROOT}/v1</code>" in footer and f'href="{ROOT}/health"' in footer
    assets = [a for html in pages.values() for a in addresses(html) if "/static/" in a]
    assert f"{ROOT}/ui/static/ui.css" in assets and f"{ROOT}/ui/static/ui.js" in assets
    for asset in set(assets):
        assert proxied.get(asset).status_code == 200, asset


def test_forms_redirect_and_flash_under_the_prefix(app: FastAPI, proxied: TestClient) -> None:
    ids = seed(app.state.container)
    page = proxied.get(f"{ROOT}/ui/prompts/greet").text
    actions = [a for a in re.findall(r'<form[^>]*action="([^"]*)"', page)]
    assert actions and all(a.startswith(f"{ROOT}/ui/") for a in actions), actions
    moved = proxied.post(
        f"{ROOT}/ui/prompts/greet/labels", data={"label": "staging", "version": "2"}
    )
    assert moved.status_code == 303
    assert moved.headers["location"] == f"{ROOT}/ui/prompts/greet"
    assert cookie_path(moved.headers["set-cookie"]) == f"{ROOT}/ui"  # the flash message's
    shown = proxied.get(moved.headers["location"])
    assert "Label &#39;staging&#39; now points at version 2." in shown.text
    assert cookie_path(shown.headers["set-cookie"]) == f"{ROOT}/ui"  # shown once: deleted
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("/alerts", {"name": "err", "metric": "error_rate", "threshold": "0.1"}, "/alerts"),
        (f"/traces/{ids['trace']}/feedback", {"kind": "thumbs", "value": "1"},
         f"/traces/{ids['trace']}#feedback"),
        ("/annotation/review/next", {}, "/annotation/review/items/"),
        ("/models/bot/versions/2/stage", {"stage": "staging", "back": "version"},
         "/models/bot/versions/2"),
        ("/governance/lineage?entity_id=" + ids["mv"], {}, f"/governance/lineage/{ids['mv']}"),
    ]  # fmt: skip
    for path, data, expected in cases:
        if "?" in path:
            response = proxied.get(f"{ROOT}/ui{path}")
        else:
            response = proxied.post(f"{ROOT}/ui{path}", data=data)
        assert response.status_code == 303, (path, response.text[-500:])
        assert response.headers["location"].startswith(f"{ROOT}/ui{expected}"), path


def test_errors_under_the_prefix_keep_their_kind(proxied: TestClient) -> None:
    page = proxied.get(f"{ROOT}/ui/no/such/page")
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    assert f'href="{ROOT}/ui/"' in page.text
    missing = proxied.get(f"{ROOT}/ui/static/nope.css")  # inside the static files' mount
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("text/html")
    assert f'href="{ROOT}/ui/static/ui.css"' in missing.text
    openai = proxied.post(f"{ROOT}/v1/chat/completions", json={})
    assert openai.status_code == 401 and "error" in openai.json()
    api = proxied.get(f"{ROOT}/api/no/such/thing")
    assert api.headers["content-type"] == "application/problem+json"


def test_the_origin_check_takes_the_proxy_s_host(app: FastAPI, keys: dict[str, str]) -> None:
    with TestClient(app, root_path=ROOT, follow_redirects=False) as tc:
        form = {"key": keys["admin"], "next": f"{ROOT}/ui/"}
        same = tc.post(f"{ROOT}/ui/login", data=form, headers={"Origin": "http://testserver"})
        assert same.status_code == 303
        # A proxy that sends its own Host upstream names the browser's in X-Forwarded-Host.
        forwarded = {"Origin": "https://example.org", "X-Forwarded-Host": "example.org"}
        assert tc.post(f"{ROOT}/ui/login", data=form, headers=forwarded).status_code == 303
        evil = {"Origin": "https://evil.example", "X-Forwarded-Host": "example.org"}
        refused = tc.post(f"{ROOT}/ui/login", data=form, headers=evil)
        assert refused.status_code == 403 and "another site" in refused.text


def test_without_a_root_path_nothing_changes(app: FastAPI, keys: dict[str, str]) -> None:
    with TestClient(app, follow_redirects=False) as tc:
        signed = tc.post("/ui/login", data={"key": keys["admin"], "next": "/ui/"})
        assert cookie_path(signed.headers["set-cookie"]) == "/"
        assert tc.get("/ui").headers["location"] == "/ui/"
        html = tc.get("/ui/").text
        assert all(a.startswith(("/ui/", "/health")) for a in addresses(html)), addresses(html)
        assert "<code>/v1</code>" in html and 'href="/health"' in html
