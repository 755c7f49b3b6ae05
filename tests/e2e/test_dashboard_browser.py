"""The dashboard in a real browser: `llmloop serve` as a subprocess, headless Chromium (Debian's
package) driven by Playwright, signed in with a key made by `llmloop keys create`.

Skips where Chromium or Playwright is missing (install Debian's ``chromium`` package); CI here
has both. Every page must load without a server error or a console error, and what a user does
(send a request with the official client, find its trace, leave feedback) must reach the store.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Chromium (Debian: apt install chromium)"
)
LLMLOOP = str(Path(sys.executable).with_name("llmloop"))


@dataclass
class Served:
    url: str
    key: str
    env: dict[str, str]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([LLMLOOP, *args], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
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
    created = json.loads(_cli(env, "keys", "create", "ada", "--role", "admin", "--json"))
    _cli(env, "prompts", "add-version", "support", "--template", "<b>Answer</b>: {{ question }}")
    port = _port()
    proc = subprocess.Popen(
        [LLMLOOP, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail(f"the server did not start: {proc.communicate()[0]}")
    yield Served(url, created["secret"], env)
    proc.terminate()
    try:
        output = proc.communicate(timeout=30)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        output = proc.communicate()[0]
    assert "Traceback" not in output, output


@pytest.fixture
def browser(served: Served) -> Iterator[Any]:
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
