"""The dashboard says where a model version is served: a "Served by" box on the version page
linking to the deployment pages (following an alias move), a "Deployments" section on the model
card, deployment nodes in the version's lineage, and a warning when a served version is archived.
User text (a target's name) is escaped."""

from __future__ import annotations

import re
from html import unescape

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Response

from llmloop.core.deployments import DeploymentSpec
from llmloop.core.models import ModelVersionCreate
from llmloop.services.actors import local_actor
from llmloop.services.container import Container

ME = local_actor("ops")
HOSTILE = "<script>alert(1)</script>"


@pytest.fixture
def app(threaded_app: FastAPI) -> FastAPI:
    return threaded_app


def seed(c: Container) -> None:
    """bot v1..v3, champion -> 1; chat serves champion with a named canary on v2 (pinned);
    support falls back to champion; v3 is served by nothing."""
    for _ in range(3):
        c.models.create_version("bot", ModelVersionCreate(format="echo"), ME)
    c.models.set_alias("bot", "champion", 1, ME)
    specs = [
        {"name": "chat", "targets": [
            {"model": "bot", "alias": "champion", "weight": 3},
            {"model": "bot", "version": 2, "weight": 1, "name": f"canary {HOSTILE}"}]},
        {"name": "support", "targets": [{"engine": {"kind": "echo", "model": "echo"}}],
         "fallbacks": [{"model": "bot", "alias": "champion"}]},
    ]  # fmt: skip
    for spec in specs:
        c.deployments.apply(DeploymentSpec.model_validate(spec), ME)


def served_box(html: str) -> str:
    found = re.search(r'<section class="card" id="served-by">(.*?)</section>', html, re.S)
    assert found, "no Served by box"
    return found.group(1)


def text_of(html: str) -> str:
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


def test_the_version_page_shows_who_serves_it(ui: TestClient, c: Container) -> None:
    seed(c)
    box = served_box(ui.get("/ui/models/bot/versions/1").text)
    assert '<a href="/ui/deployments/chat">chat</a>' in box
    assert '<a href="/ui/deployments/support">support</a>' in box
    assert "primary 75% via champion" in text_of(box)
    assert "fallback 1 via champion" in text_of(box)
    canary = served_box(ui.get("/ui/models/bot/versions/2").text)
    assert "primary 25% via pinned v2" in text_of(canary)
    assert HOSTILE not in canary and "&lt;script&gt;" in canary
    assert "No deployment serves this version now." in served_box(
        ui.get("/ui/models/bot/versions/3").text
    )
    # The links lead to the deployment pages.
    assert ui.get("/ui/deployments/chat").status_code == 200


def test_the_box_follows_an_alias_move(ui: TestClient, c: Container) -> None:
    seed(c)
    c.models.set_alias("bot", "champion", 3, ME)
    assert "No deployment serves" in served_box(ui.get("/ui/models/bot/versions/1").text)
    box = text_of(served_box(ui.get("/ui/models/bot/versions/3").text))
    assert "chat primary 75% via champion" in box and "support fallback 1 via champion" in box


def test_a_viewer_sees_the_box(viewer_ui: TestClient, c: Container) -> None:
    seed(c)
    page = viewer_ui.get("/ui/models/bot/versions/1")
    assert page.status_code == 200 and "/ui/deployments/chat" in served_box(page.text)


def test_the_lineage_on_the_version_page_has_the_deployments(ui: TestClient, c: Container) -> None:
    seed(c)
    page = ui.get("/ui/models/bot/versions/1").text
    downstream = page.split("Downstream")[1].split("Audit entries")[0]
    assert '<a href="/ui/deployments/chat">chat</a>' in downstream
    assert '<a href="/ui/deployments/support">support</a>' in downstream
    graph = ui.get(f"/ui/governance/lineage/{c.models.get_version('bot', 1).id}").text
    assert "serves 75% via champion" in graph and "fallback via champion" in graph


def test_the_model_card_has_a_deployments_section(ui: TestClient, c: Container) -> None:
    seed(c)
    card = ui.get("/ui/models/bot/versions/2/card").text
    section = card.split('<h2 id="deployments">Deployments</h2>')[1]
    assert '<a href="/ui/deployments/chat">chat</a>' in section
    assert "primary 25%" in section and "pinned v2" in section
    assert HOSTILE not in card and "canary &lt;script&gt;alert(1)&lt;/script&gt;" in section
    bare = ui.get("/ui/models/bot/versions/3/card").text
    assert "No deployment serves this version now." in bare.split('id="deployments"')[1]
    markdown = ui.get("/ui/models/bot/versions/1/card.md").text
    assert "## Deployments" in markdown and "| support | fallback 1 | champion |" in markdown


def follow(client: TestClient, response: Response) -> str:
    assert response.status_code == 303, response.text
    return unescape(client.get(response.headers["location"]).text)


def flash(page: str) -> str:
    found = re.search(r'<p class="flash (\w+)" role="status">(.*?)</p>', page, re.S)
    assert found, "no flash message on the page"
    return f"{found.group(1)}: {found.group(2)}"


def test_archiving_a_served_version_warns(editor_ui: TestClient, c: Container) -> None:
    seed(c)
    form = {"stage": "archived", "back": "version"}
    served = editor_ui.post("/ui/models/bot/versions/1/stage", data=form)
    message = flash(follow(editor_ui, served))
    assert message.startswith("error: Version 1 is now in stage 'archived'. Deployments still")
    assert "chat: primary 75% via champion; support: fallback 1 via champion" in message
    assert c.models.get_version("bot", 1).stage == "archived"  # archived all the same
    quiet = editor_ui.post("/ui/models/bot/versions/3/stage", data=form)
    assert flash(follow(editor_ui, quiet)) == "ok: Version 3 is now in stage 'archived'."


def test_an_unknown_version_is_still_the_404_page(ui: TestClient, c: Container) -> None:
    seed(c)
    page = ui.get("/ui/models/bot/versions/9")
    assert page.status_code == 404 and "Traceback" not in page.text
