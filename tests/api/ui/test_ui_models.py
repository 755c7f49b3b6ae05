"""Dashboard pages of the model registry: list, model, version, alias and stage forms."""

from __future__ import annotations

import re
from html import unescape

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Response

from llmloop.core.base import ArtifactRef
from llmloop.core.datasets import DatasetVersionCreate
from llmloop.core.models import ModelCreate, ModelVersionCreate
from llmloop.core.prompts import PromptVersionCreate
from llmloop.core.runs import RunCreate, RunInput
from llmloop.services.actors import Actor, local_actor
from llmloop.services.container import Container
from llmloop.services.pointers import MODEL_ALIAS

ADMIN = local_actor("seeder")
EDITOR = Actor(name="editor-key", role="editor")
HOSTILE = "<script>x</script>"


def seed_model(c: Container, name: str = "chat-model", versions: int = 2) -> None:
    c.models.create(ModelCreate(name=name, description=f"Support bot {HOSTILE}"), ADMIN)
    for i in range(versions):
        spec = ModelVersionCreate(
            base_model="Qwen/Qwen2.5-0.5B",
            format="peft-lora",
            metrics={"accuracy": 0.8 + i / 100, "<img src=x>": 1.0},
            params={"lr": 0.0002, "note": HOSTILE},
            description=f"Model card of v{i + 1}.\n\nIntended use: {HOSTILE}",
            artifact=ArtifactRef(uri=f"file:///art/{i}", sha256="ab" * 32, size=1234),
        )
        c.models.create_version(name, spec, ADMIN)


def follow(client: TestClient, response: Response) -> str:
    """The page a post/redirect/get lands on, with its one-time flash message."""
    assert response.status_code == 303, response.text
    page = client.get(response.headers["location"])
    assert page.status_code == 200, page.text
    return unescape(page.text)


def flash(page: str) -> str:
    found = re.search(r'<p class="flash (\w+)" role="status">(.*?)</p>', page, re.S)
    assert found, "no flash message on the page"
    return f"{found.group(1)}: {found.group(2)}"


# --- list ------------------------------------------------------------------------------------


def test_the_empty_list_says_how_to_register_one(ui: TestClient) -> None:
    page = ui.get("/ui/models")
    assert page.status_code == 200
    assert "No models yet" in page.text and "llmloop models create" in page.text


def test_the_list_shows_versions_latest_and_aliases(ui: TestClient, c: Container) -> None:
    seed_model(c)
    c.models.create(ModelCreate(name="empty-model"), ADMIN)
    c.models.set_alias("chat-model", "champion", 1, ADMIN)
    page = ui.get("/ui/models")
    assert page.status_code == 200
    row = re.search(r"chat-model</strong>.*?</tr>", page.text, re.S)
    assert row, page.text
    cells = row.group(0)
    assert '<td class="num">2</td>' in cells
    assert 'href="/ui/models/chat-model/versions/2">v2</a>' in cells
    assert 'href="/ui/models/chat-model/versions/1"' in cells and "champion → v1" in cells
    assert "just now" in cells
    empty = re.search(r"empty-model</strong>.*?</tr>", page.text, re.S)
    assert empty and '<td class="num">0</td>' in empty.group(0) and "none" in empty.group(0)
    assert HOSTILE not in page.text and "&lt;script&gt;" in page.text


def test_the_list_pages(ui: TestClient, c: Container) -> None:
    for i in range(3):
        c.models.create(ModelCreate(name=f"m{i}"), ADMIN)
    first = ui.get("/ui/models?limit=2")
    assert "/ui/models/m0" in first.text and "/ui/models/m1" in first.text
    assert "/ui/models/m2" not in first.text
    assert "offset=2&limit=2" in first.text  # a next page exists
    last = ui.get("/ui/models?limit=2&offset=2")
    assert "/ui/models/m2" in last.text and "offset=4" not in last.text
    assert "offset=0&limit=2" in last.text
    beyond = ui.get("/ui/models?offset=10")
    assert "No models on this page" in beyond.text
    assert ui.get("/ui/models?limit=0").status_code == 422
    assert ui.get("/ui/models?limit=501").status_code == 422


def test_pages_need_a_sign_in(app: FastAPI) -> None:
    with TestClient(app, follow_redirects=False) as anonymous:
        response = anonymous.get("/ui/models/x/versions/1")
        assert response.status_code == 303
        assert response.headers["location"].startswith("/ui/login?next=")
        assert anonymous.post("/ui/models/x/aliases", data={}).status_code == 303


# --- one model -------------------------------------------------------------------------------


def test_a_model_page_lists_versions_newest_first(ui: TestClient, c: Container) -> None:
    seed_model(c)
    c.models.set_alias("chat-model", "champion", 2, ADMIN)
    c.models.set_stage("chat-model", 2, "production", ADMIN)
    page = ui.get("/ui/models/chat-model")
    assert page.status_code == 200
    text = page.text
    assert text.index(">v2</strong>") < text.index(">v1</strong>")
    v2 = text[text.index(">v2</strong>") : text.index(">v1</strong>")]
    assert '<span class="badge production">production</span>' in v2
    assert '<span class="badge alias">champion</span>' in v2
    assert "file:///art/1" in v2 and "peft-lora" in v2 and "0.81" in v2
    assert 'action="/ui/models/chat-model/aliases"' in text
    assert 'action="/ui/models/chat-model/versions/2/stage"' in text
    assert 'action="/ui/models/chat-model/protect"' in text  # admins may protect
    assert HOSTILE not in text and "Support bot &lt;script&gt;" in text
    assert "&lt;img src=x&gt;" in text


def test_a_model_without_versions_says_how_to_add_one(ui: TestClient, c: Container) -> None:
    c.models.create(ModelCreate(name="bare"), ADMIN)
    page = ui.get("/ui/models/bare")
    assert page.status_code == 200
    assert "No versions yet" in page.text and "llmloop models add-version bare" in page.text
    assert "/aliases" not in page.text  # nothing to point an alias at


def test_unknown_models_and_versions_are_404_pages(ui: TestClient, c: Container) -> None:
    seed_model(c, versions=1)
    for url in (
        "/ui/models/nope",
        "/ui/models/nope/versions/1",
        "/ui/models/chat-model/versions/7",
        "/ui/models/chat-model/versions/99999999999999999999",
        "/ui/models/chat-model/versions/champion",
        "/ui/models/chat-model/versions/0",
        "/ui/models/chat-model/versions/%C2%B2",
        "/ui/models/chat-model/versions/Not%20An%20Alias",
    ):
        response = ui.get(url)
        assert response.status_code == 404, url
        assert response.headers["content-type"].startswith("text/html")
    assert "no model named &#39;nope&#39;" in ui.get("/ui/models/nope").text
    assert (
        ui.post("/ui/models/nope/aliases", data={"alias": "a", "version": "1"}).status_code == 404
    )
    stage = ui.post("/ui/models/chat-model/versions/9/stage", data={"stage": "staging"})
    assert stage.status_code == 404


def test_a_viewer_sees_no_forms_and_is_refused(viewer_ui: TestClient, c: Container) -> None:
    seed_model(c)
    page = viewer_ui.get("/ui/models/chat-model")
    assert page.status_code == 200
    assert "/aliases" not in page.text and "/stage" not in page.text
    assert "/stage" not in viewer_ui.get("/ui/models/chat-model/versions/1").text
    alias = viewer_ui.post("/ui/models/chat-model/aliases", data={"alias": "x", "version": "1"})
    assert alias.status_code == 403 and "this needs &#39;editor&#39;" in alias.text
    stage = viewer_ui.post("/ui/models/chat-model/versions/1/stage", data={"stage": "staging"})
    assert stage.status_code == 403
    protect = viewer_ui.post("/ui/models/chat-model/protect", data={"alias": "x"})
    assert protect.status_code == 403
    assert c.models.get("chat-model").aliases == {}
    assert c.models.get_version("chat-model", 1).stage == "none"


# --- actions ---------------------------------------------------------------------------------


def test_moving_an_alias_changes_the_store(ui: TestClient, c: Container) -> None:
    seed_model(c)
    response = ui.post("/ui/models/chat-model/aliases", data={"alias": "champion", "version": "2"})
    assert response.headers["location"] == "/ui/models/chat-model"
    page = follow(ui, response)
    assert flash(page) == "ok: Alias 'champion' now points at version 2."
    assert c.models.get("chat-model").aliases == {"champion": 2}
    again = ui.post(
        "/ui/models/chat-model/aliases",
        data={"alias": "champion", "version": "1", "back": "version"},
    )
    assert again.headers["location"] == "/ui/models/chat-model/versions/1"
    assert "now points at version 1" in follow(ui, again)
    assert c.models.get("chat-model").aliases == {"champion": 1}


@pytest.mark.parametrize(
    ("alias", "version", "message"),
    [
        ("Champion!", "1", "alias: must be lower-case letters"),
        ("", "1", "alias: must be lower-case letters"),
        ("champion", "two", "version: choose a version number"),
        ("champion", "0", "version: Input should be greater than or equal to 1"),
        ("champion", "9", "model 'chat-model' has no version 9"),
    ],
)
def test_a_bad_alias_form_says_why_and_changes_nothing(
    ui: TestClient, c: Container, alias: str, version: str, message: str
) -> None:
    seed_model(c)
    response = ui.post("/ui/models/chat-model/aliases", data={"alias": alias, "version": version})
    assert flash(follow(ui, response)).startswith(f"error: {message}")
    assert c.models.get("chat-model").aliases == {}


def test_a_protected_alias_asks_for_an_approval(
    editor_ui: TestClient, ui: TestClient, c: Container
) -> None:
    seed_model(c)
    c.models.set_alias("chat-model", "champion", 1, ADMIN)
    c.governance.protect(MODEL_ALIAS, "chat-model", "champion", True, ADMIN)
    response = editor_ui.post(
        "/ui/models/chat-model/aliases",
        data={
            "alias": "champion",
            "version": "2",
            "comment": "better eval",
            "request_approval": "on",
        },
    )
    message = flash(follow(editor_ui, response))
    assert message.startswith("ok: 'champion' is protected, so it did not move: approval apr_")
    assert c.models.get("chat-model").aliases == {"champion": 1}
    [approval] = c.governance.list_approvals("pending")
    assert (approval.name, approval.label, approval.version) == ("chat-model", "champion", 2)
    assert (approval.requested_by, approval.comment) == ("editor-key", "better eval")
    page = editor_ui.get("/ui/models/chat-model")
    assert "Waiting for approval" in page.text and "asked by editor-key" in page.text
    # Unticked, the page only says why it refused.
    refused = ui.post("/ui/models/chat-model/aliases", data={"alias": "champion", "version": "2"})
    assert flash(follow(ui, refused)).startswith("error: 'champion' is protected: it moves only")
    assert len(c.governance.list_approvals("pending")) == 1


def test_setting_a_stage_changes_the_store(ui: TestClient, c: Container) -> None:
    seed_model(c)
    response = ui.post("/ui/models/chat-model/versions/1/stage", data={"stage": "production"})
    assert response.headers["location"] == "/ui/models/chat-model"
    assert flash(follow(ui, response)) == "ok: Version 1 is now in stage 'production'."
    assert c.models.get_version("chat-model", 1).stage == "production"
    back = ui.post(
        "/ui/models/chat-model/versions/1/stage", data={"stage": "archived", "back": "version"}
    )
    assert back.headers["location"] == "/ui/models/chat-model/versions/1"
    follow(ui, back)
    assert c.models.get_version("chat-model", 1).stage == "archived"


def test_a_bad_stage_says_why_and_changes_nothing(ui: TestClient, c: Container) -> None:
    seed_model(c)
    response = ui.post("/ui/models/chat-model/versions/1/stage", data={"stage": "<b>live</b>"})
    assert flash(follow(ui, response)) == (
        "error: stage must be one of none, staging, production, archived"
    )
    assert c.models.get_version("chat-model", 1).stage == "none"
    assert ui.post("/ui/models/chat-model/versions/abc/stage", data={}).status_code == 422


def test_an_editor_can_act_but_not_protect(editor_ui: TestClient, c: Container) -> None:
    seed_model(c)
    page = editor_ui.get("/ui/models/chat-model").text
    assert "/aliases" in page and "/protect" not in page
    follow(
        editor_ui,
        editor_ui.post("/ui/models/chat-model/versions/2/stage", data={"stage": "staging"}),
    )
    assert c.models.get_version("chat-model", 2).stage == "staging"
    refused = editor_ui.post("/ui/models/chat-model/protect", data={"alias": "champion"})
    assert refused.status_code == 403


def test_an_admin_protects_and_lifts_an_alias(ui: TestClient, c: Container) -> None:
    seed_model(c)
    response = ui.post("/ui/models/chat-model/protect", data={"alias": "champion", "protect": "on"})
    assert "is protected" in flash(follow(ui, response))
    move = ui.post("/ui/models/chat-model/aliases", data={"alias": "champion", "version": "1"})
    assert "protected" in flash(follow(ui, move))
    assert c.models.get("chat-model").aliases == {}
    lift = ui.post("/ui/models/chat-model/protect", data={"alias": "champion", "protect": "off"})
    assert "no longer protected" in flash(follow(ui, lift))
    follow(ui, ui.post("/ui/models/chat-model/aliases", data={"alias": "champion", "version": "1"}))
    assert c.models.get("chat-model").aliases == {"champion": 1}
    bad = ui.post("/ui/models/chat-model/protect", data={"alias": "Not OK"})
    assert flash(follow(ui, bad)).startswith("error: alias: must be lower-case")


def test_a_form_from_another_site_is_refused(ui: TestClient, c: Container) -> None:
    seed_model(c)
    response = ui.post(
        "/ui/models/chat-model/versions/1/stage",
        data={"stage": "production"},
        headers={"Origin": "https://evil.example"},
    )
    assert response.status_code == 403
    assert c.models.get_version("chat-model", 1).stage == "none"


# --- one version -----------------------------------------------------------------------------


def seed_lineage(c: Container) -> dict[str, str]:
    """A data set and prompt feed a run (with a hostile name) that produced chat-model v1."""
    dsv = c.datasets.create_version(
        "support-data", DatasetVersionCreate(rows=[{"text": "hi"}]), ADMIN
    )
    prv = c.prompts.create_version(
        "support-prompt", PromptVersionCreate(template="Hi {{ name }}"), ADMIN
    )
    run = c.runs.create(
        RunCreate(name=HOSTILE, kind="finetune", inputs=[RunInput(id=dsv.id), RunInput(id=prv.id)]),
        ADMIN,
    )
    c.models.create(ModelCreate(name="chat-model"), ADMIN)
    v1 = c.models.create_version(
        "chat-model",
        ModelVersionCreate(run_id=run.id, inputs=[dsv.id], description=f"Card {HOSTILE}"),
        ADMIN,
    )
    v2 = c.models.create_version("chat-model", ModelVersionCreate(base_model=v1.id), ADMIN)
    return {"dsv": dsv.id, "prv": prv.id, "run": run.id, "v1": v1.id, "v2": v2.id}


def test_a_version_page_shows_fields_card_metrics_and_audit(ui: TestClient, c: Container) -> None:
    seed_model(c)
    c.models.set_alias("chat-model", "champion", 2, ADMIN)
    c.models.set_stage("chat-model", 2, "staging", ADMIN)
    c.models.set_alias("chat-model", "challenger", 1, ADMIN)
    page = ui.get("/ui/models/chat-model/versions/2")
    assert page.status_code == 200
    text = page.text
    version = c.models.get_version("chat-model", 2)
    assert version.id in text and "Qwen/Qwen2.5-0.5B" in text and "ab" * 32 in text
    assert '<span class="badge staging">staging</span>' in text
    assert '<span class="badge alias">champion</span>' in text
    assert '<span class="badge alias">challenger</span>' not in text
    assert '<p style="white-space:pre-wrap">Model card of v2.</p>' in text
    assert "Intended use: &lt;script&gt;x&lt;/script&gt;" in text
    assert HOSTILE not in text
    assert "0.81" in text and "&lt;img src=x&gt;" in text
    assert "&#34;lr&#34;: 0.0002" in text or "&quot;lr&quot;: 0.0002" in text
    audit = text.split("<h2>Audit entries</h2>")[1]
    assert "model_version.create" in audit and "model_version.stage" in audit
    assert "stage: none → staging" in unescape(audit)
    assert "model_alias.move" in audit  # champion moved here
    assert audit.count("model_alias.move") == 1  # challenger points elsewhere


def test_a_version_page_shows_linked_lineage(ui: TestClient, c: Container) -> None:
    ids = seed_lineage(c)
    page = ui.get("/ui/models/chat-model/versions/1")
    assert page.status_code == 200
    text = page.text
    up = text.split("Upstream")[1].split("Downstream")[0]
    down = text.split("Downstream")[1].split("<h2>Audit entries</h2>")[0]
    assert f'href="/ui/runs/{ids["run"]}">&lt;script&gt;x&lt;/script&gt;</a>' in up
    assert 'href="/ui/datasets/support-data/versions/1">support-data:v1</a>' in up
    assert 'href="/ui/prompts/support-prompt">support-prompt:v1</a>' in up  # via the run
    assert 'href="/ui/models/chat-model/versions/2">chat-model:v2</a>' in down
    assert f'href="/ui/governance/lineage/{ids["v1"]}"' in text
    assert HOSTILE not in text
    assert "Card &lt;script&gt;" in text
    v2 = ui.get("/ui/models/chat-model/versions/2").text
    assert 'href="/ui/models/chat-model/versions/1">chat-model v1</a>' in v2  # the base model


def test_an_alias_or_latest_leads_to_the_numbered_page(ui: TestClient, c: Container) -> None:
    seed_model(c)
    c.models.set_alias("chat-model", "champion", 1, ADMIN)
    latest = ui.get("/ui/models/chat-model/versions/latest")
    assert latest.headers["location"] == "/ui/models/chat-model/versions/2"
    champion = ui.get("/ui/models/chat-model/versions/champion")
    assert champion.headers["location"] == "/ui/models/chat-model/versions/1"


def test_a_version_without_extras_says_so(ui: TestClient, c: Container) -> None:
    c.models.create_version("plain", ModelVersionCreate(), ADMIN)
    text = ui.get("/ui/models/plain/versions/1").text
    assert "No description or model card" in text
    assert "No metrics were recorded" in text and "No parameters were recorded" in text
    assert "No artifact" in text and "Nothing upstream" in text
    assert "Nothing downstream yet" in text
