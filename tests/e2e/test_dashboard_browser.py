"""The dashboard in a real browser: `llmloop serve` as a subprocess, headless Chromium (Debian's
package) driven by Playwright, signed in with a key made by `llmloop keys create`.

Skips where Chromium or Playwright is missing (install Debian's ``chromium`` package); CI here
has both. Every page must load without a server error or a console error, and what a user does
(send a request with the official client, find its trace, leave feedback) must reach the store.
The same holds behind a reverse proxy that serves llmloop under a path prefix and strips it
(``llmloop serve --root-path``): a small proxy in this file plays nginx's part.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import openai
import pytest
from tests.fixtures.served import run_cli, serving

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Chromium (Debian: apt install chromium)"
)


@dataclass
class Served:
    url: str
    key: str
    env: dict[str, str]


@contextmanager
def _serve(tmp_path: Path, *flags: str) -> Iterator[Served]:
    """``llmloop serve`` with ``flags`` on a fresh home, with a key and a prompt in it."""
    deployments = tmp_path / "deployments.yaml"
    deployments.write_text(
        json.dumps({"deployments": [{"name": "chat", "targets": [{"engine": {"kind": "echo"}}]}]})
    )
    env = {
        **os.environ,
        "LLMLOOP_HOME": str(tmp_path / "home"),
        "LLMLOOP_DEPLOYMENTS_FILE": str(deployments),
        "LLMLOOP_TRACE_FLUSH_MS": "100",
    }
    created = json.loads(run_cli(env, "keys", "create", "ada", "--role", "admin", "--json"))
    run_cli(env, "prompts", "add-version", "support", "--template", "<b>Answer</b>: {{ question }}")
    with serving(*flags, env=env, deadline_s=60) as server:
        yield Served(server.url, created["secret"], env)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    with _serve(tmp_path) as server:
        yield server


@pytest.fixture
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM)
        try:
            yield chromium
        finally:
            chromium.close()


def _watch(page: Any) -> list[str]:
    """Console errors and failed responses of ``page``, collected as it goes."""
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on(
        "response",
        lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None,
    )
    return problems


def _sign_in(page: Any, served: Served) -> None:
    page.goto(f"{served.url}/ui/prompts")
    assert "/ui/login" in page.url
    page.fill("input[name=key]", served.key)
    page.click("button[type=submit]")
    page.wait_for_url(f"{served.url}/ui/prompts")


def test_every_page_of_the_nav_loads_clean(served: Served, browser: Any) -> None:
    client = openai.OpenAI(api_key=served.key, base_url=f"{served.url}/v1", max_retries=0)
    answer = client.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "hello <i>browser</i>"}]
    )
    assert answer.choices[0].message.content == "hello <i>browser</i>"
    page = browser.new_page()
    problems = _watch(page)
    _sign_in(page, served)
    links = page.eval_on_selector_all("header nav a", "els => els.map(e => e.href)")
    assert len(links) >= 10
    for link in links:
        response = page.goto(link)
        assert response is not None and response.status == 200, link
        assert page.locator("h1").count() >= 1, link
    assert page.locator("i:text('browser')").count() == 0  # user text is never markup
    assert problems == []


def test_signing_out_in_the_browser(served: Served, browser: Any) -> None:
    page = browser.new_page()
    _sign_in(page, served)
    page.click("text=Sign out")
    page.wait_for_url(f"{served.url}/ui/login")
    page.goto(f"{served.url}/ui/models")
    assert "/ui/login" in page.url


def test_a_request_found_in_the_browser_gets_feedback(served: Served, browser: Any) -> None:
    client = openai.OpenAI(api_key=served.key, base_url=f"{served.url}/v1", max_retries=0)
    client.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "where is my parcel?"}], user="ann"
    )
    page = browser.new_page()
    problems = _watch(page)
    _sign_in(page, served)
    deadline = time.time() + 20  # the trace writer flushes every 100 ms here
    while True:
        page.goto(f"{served.url}/ui/traces?deployment=chat")
        if page.locator("text=where is my parcel?").count() or time.time() > deadline:
            break
        time.sleep(0.3)
    page.locator("table a[href*='/ui/traces/tr_']").first.click()
    page.wait_for_load_state()
    trace_id = page.url.rsplit("/", 1)[1]
    assert page.locator(".chat .msg.user", has_text="where is my parcel?").count() == 1
    page.fill("#fb-thumbs-comment", "wrong parcel")
    page.click("button:text('Thumbs down')")
    page.wait_for_url(f"{served.url}/ui/traces/{trace_id}#feedback")
    assert page.locator("[role=status]").count() == 1
    stored = httpx.get(
        f"{served.url}/api/traces/{trace_id}/feedback",
        headers={"Authorization": f"Bearer {served.key}"},
    ).json()
    assert [(f["kind"], f["value"], f["comment"]) for f in stored] == [
        ("thumbs", 0.0, "wrong parcel")
    ]
    assert problems == []


def test_a_narrow_screen_never_scrolls_the_page_sideways(served: Served, browser: Any) -> None:
    """At phone width a wide table or chart scrolls in its place, the page itself does not
    (charts were 460 px at least, tables as wide as their text, a long key name in a select)."""
    run_cli(served.env, "keys", "create", "batch-" + "x" * 120, "--role", "viewer")
    client = openai.OpenAI(api_key=served.key, base_url=f"{served.url}/v1", max_retries=0)
    client.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "a narrow screen"}], user="u" * 80
    )
    page = browser.new_page(viewport={"width": 375, "height": 800})
    problems = _watch(page)
    _sign_in(page, served)
    deadline = time.time() + 20
    while True:  # the trace writer flushes every 100 ms here
        page.goto(f"{served.url}/ui/traces")
        if page.locator("table a[href*='/ui/traces/tr_']").count() or time.time() > deadline:
            break
        time.sleep(0.3)
    trace = page.locator("table a[href*='/ui/traces/tr_']").first.get_attribute("href")
    links = page.eval_on_selector_all("header nav a", "els => els.map(e => e.href)")
    links += [f"{served.url}{trace}", f"{served.url}/ui/governance/lineage/{trace.rsplit('/')[-1]}"]
    for link in links:
        page.goto(link)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 375, (link, width)
    page.goto(f"{served.url}/ui/monitoring")
    assert page.locator("svg.chart").count() > 0  # the charts are there, and fit
    rows = Path(served.env["LLMLOOP_HOME"]) / "rows.jsonl"
    rows.write_text("".join(f'{{"prompt": "question {i}", "response": "answer {i}"}}\n'
                            for i in range(30)))  # fmt: skip
    run_cli(served.env, "datasets", "add-version", "narrow", "--file", str(rows))
    run_cli(served.env, "data", "profile", "narrow")
    page.goto(f"{served.url}/ui/datasets/narrow/versions/1/report")  # the EDA report's plots
    assert page.locator("svg").count() > 0
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375, ("report", width)
    assert problems == []


# --- behind a reverse proxy under a path prefix -----------------------------------------------

ROOT = "/llmloop"
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te",
              "trailer", "upgrade", "content-length"}  # fmt: skip


def _strip_proxy(upstream: str) -> ThreadingHTTPServer:
    """What ``location /llmloop/ { proxy_pass http://upstream/; }`` does in nginx: only paths
    under the prefix pass, without it; Host becomes the upstream's, the browser's goes on in
    X-Forwarded-Host; redirects and cookies come back as they are."""
    target = urlsplit(upstream)

    class Handler(BaseHTTPRequestHandler):
        def _forward(self) -> None:
            if not self.path.startswith(f"{ROOT}/"):
                self.send_error(404, "outside the proxied prefix")
                return
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            headers["Host"] = str(target.netloc)
            headers["X-Forwarded-Host"] = self.headers.get("host", "")
            conn = http.client.HTTPConnection(str(target.hostname), target.port, timeout=60)
            try:
                conn.request(self.command, self.path[len(ROOT) :], body, headers)
                answer = conn.getresponse()
                data = answer.read()
            finally:
                conn.close()
            self.send_response(answer.status)
            for key, value in answer.getheaders():
                if key.lower() not in HOP_BY_HOP:
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_HEAD = _forward

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[Served]:
    """The server behind the proxy: ``url`` is the proxy's address with the prefix."""
    with _serve(tmp_path, "--root-path", ROOT) as server:
        proxy = _strip_proxy(server.url)
        try:
            yield Served(f"http://127.0.0.1:{proxy.server_port}{ROOT}", server.key, server.env)
        finally:
            proxy.shutdown()
            proxy.server_close()


def test_the_dashboard_behind_a_proxy_under_a_prefix(proxied: Served, browser: Any) -> None:
    client = openai.OpenAI(api_key=proxied.key, base_url=f"{proxied.url}/v1", max_retries=0)
    client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}])
    page = browser.new_page()
    problems = _watch(page)
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    _sign_in(page, proxied)  # the sign-in redirect and its next= carry the prefix
    links = page.eval_on_selector_all("header nav a", "els => els.map(e => e.href)")
    assert len(links) >= 10 and all(link.startswith(f"{proxied.url}/ui") for link in links)
    for link in links:
        response = page.goto(link)
        assert response is not None and response.status == 200, link
    page.goto(f"{proxied.url}/ui/prompts/support")
    assert page.locator("h1", has_text="support").count() == 1
    page.goto(f"{proxied.url}/ui/alerts")
    page.fill("input[name=name]", "slow")
    page.fill("input[name=threshold]", "500")
    page.locator("form[action$='/ui/alerts'] button[type=submit]").click()
    page.wait_for_url(f"{proxied.url}/ui/alerts")  # the 303 after the POST
    assert page.locator("[role=status]", has_text="Created alert rule 'slow'").count() == 1
    footer = page.locator("footer a", has_text="health")
    assert footer.get_attribute("href") == f"{ROOT}/health"
    page.click("text=Sign out")
    page.wait_for_url(f"{proxied.url}/ui/login")
    page.goto(f"{proxied.url}/ui/models")
    assert "/ui/login" in page.url
    outside = [u for u in requested if not u.startswith(f"{proxied.url}/")]
    assert outside == [] and problems == []
