"""Dashboard pages of governance: approvals to decide, the audit log and lineage graphs."""

from __future__ import annotations

import re
from html import unescape
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Response

from llmloop.api.app import create_app
from llmloop.config import load_settings
from llmloop.core.datasets import DatasetVersionCreate
from llmloop.core.governance import ApiKeyCreate, ApprovalCreate, ApprovalPublic
from llmloop.core.models import ModelCreate, ModelVersionCreate
from llmloop.core.prompts import PromptVersionCreate
from llmloop.core.runs import RunCreate, RunInput
from llmloop.services.actors import Actor, local_actor
from llmloop.services.container import Container
from llmloop.services.pointers import MODEL_ALIAS, PROMPT_LABEL

ADMIN = local_actor("seeder")
EDITOR = Actor(name="editor-key", role="editor")
HOSTILE = "<script>x</script>"


def protected_request(c: Container, comment: str = "eval is better") -> ApprovalPublic:
    """chat-model has v1 (champion, protected) and v2; the editor asks to move champion to v2."""
    c.models.create(ModelCreate(name="chat-model"), ADMIN)
    for _ in range(2):
        c.models.create_version("chat-model", ModelVersionCreate(), ADMIN)
    c.models.set_alias("chat-model", "champion", 1, ADMIN)
    c.governance.protect(MODEL_ALIAS, "chat-model", "champion", True, ADMIN)
    spec = ApprovalCreate(
        kind="model_alias", name="chat-model", label="champion", version=2, comment=comment
    )
    return c.governance.request(spec, EDITOR)


def follow(client: TestClient, response: Response) -> str:
    assert response.status_code == 303, response.text
    page = client.get(response.headers["location"])
    assert page.status_code == 200, page.text
    return unescape(page.text)


def flash(page: str) -> str:
    found = re.search(r'<p class="flash (\w+)" role="status">(.*?)</p>', page, re.S)
    assert found, "no flash message on the page"
    return f"{found.group(1)}: {found.group(2)}"


def section(text: str, heading: str) -> str:
    """The HTML from an ``<h2>`` whose text starts with ``heading`` to the next ``<h2``."""
    start = text.index(f">{heading}")
    end = text.find("<h2", start)
    return text[start : end if end != -1 else len(text)]


# --- the governance page ---------------------------------------------------------------------


def test_the_empty_page_says_what_each_list_is_for(ui: TestClient) -> None:
    page = ui.get("/ui/governance")
    assert page.status_code == 200
    assert "No approvals waiting yet" in page.text and "llmloop approvals request" in page.text
    assert "No decided approvals yet" in page.text
    filtered = ui.get("/ui/governance?actor=nobody")
    assert "No entry matches these filters" in filtered.text
    assert 'value="nobody"' in filtered.text


def test_pending_and_decided_approvals_are_listed(ui: TestClient, c: Container) -> None:
    waiting = protected_request(c, comment=f"why not {HOSTILE}")
    c.prompts.create_version("greeting", PromptVersionCreate(template="Hi"), ADMIN)
    c.prompts.set_label("greeting", "production", 1, ADMIN)
    c.governance.protect(PROMPT_LABEL, "greeting", "production", True, ADMIN)
    c.prompts.create_version("greeting", PromptVersionCreate(template="Hello"), ADMIN)
    spec = ApprovalCreate(kind="prompt_label", name="greeting", label="production", version=2)
    rejected = c.governance.request(spec, EDITOR)
    c.governance.decide(rejected.id, False, ADMIN, "not yet")
    text = ui.get("/ui/governance").text
    pending = section(text, "Approvals waiting")
    assert waiting.id in pending and "editor-key" in pending
    assert 'href="/ui/models/chat-model">chat-model</a>' in pending
    assert 'href="/ui/models/chat-model/versions/2">v2</a>' in pending
    assert f'action="/ui/governance/approvals/{waiting.id}/approve"' in pending
    assert f'action="/ui/governance/approvals/{waiting.id}/reject"' in pending
    assert "why not &lt;script&gt;x&lt;/script&gt;" in pending and HOSTILE not in text
    assert rejected.id not in pending
    decided = section(text, "Decided approvals")
    assert '<span class="badge rejected">rejected</span>' in decided
    assert 'href="/ui/prompts/greeting">greeting</a>' in decided
    assert "not yet" in decided and "seeder" in decided
    assert waiting.id not in decided


def test_approving_moves_the_alias(ui: TestClient, c: Container) -> None:
    approval = protected_request(c)
    response = ui.post(
        f"/ui/governance/approvals/{approval.id}/approve", data={"comment": "  ship it "}
    )
    assert response.headers["location"] == "/ui/governance"
    page = follow(ui, response)
    assert flash(page).startswith("ok: chat-model champion → v2 approved")
    done = c.governance.get_approval(approval.id)
    assert (done.status, done.decided_by, done.decision_comment) == (
        "approved",
        "admin-key",
        "ship it",
    )
    assert c.models.get("chat-model").aliases == {"champion": 2}
    assert "No approvals waiting yet" in page
    assert "approval.approved" in page  # the audit log has the decision


def test_rejecting_leaves_the_alias(ui: TestClient, c: Container) -> None:
    approval = protected_request(c)
    response = ui.post(f"/ui/governance/approvals/{approval.id}/reject", data={})
    assert flash(follow(ui, response)) == "ok: chat-model champion → v2 rejected."
    assert c.governance.get_approval(approval.id).status == "rejected"
    assert c.models.get("chat-model").aliases == {"champion": 1}
    again = ui.post(f"/ui/governance/approvals/{approval.id}/approve", data={})
    assert flash(follow(ui, again)) == f"error: approval '{approval.id}' is already rejected"
    assert c.models.get("chat-model").aliases == {"champion": 1}


def test_the_service_refuses_a_self_approval(ui: TestClient, c: Container) -> None:
    protected_request(c)
    admin = Actor(name="admin-key", role="admin")
    c.models.create_version("chat-model", ModelVersionCreate(), ADMIN)
    spec = ApprovalCreate(kind="model_alias", name="chat-model", label="champion", version=3)
    own = c.governance.request(spec, admin)
    pending = section(ui.get("/ui/governance").text, "Approvals waiting")
    assert f"/approvals/{own.id}/approve" not in pending  # no form on one's own request
    assert "your request: another admin decides it" in pending
    response = ui.post(f"/ui/governance/approvals/{own.id}/approve", data={})
    assert flash(follow(ui, response)) == "error: an approval must be decided by someone else"
    assert c.governance.get_approval(own.id).status == "pending"


def test_a_single_person_setup_may_approve_its_own(tmp_path: Path) -> None:
    settings = load_settings({"home": str(tmp_path), "allow_self_approval": True}, env={})
    app = create_app(settings)
    c: Container = app.state.container
    try:
        admin = c.keys.create(ApiKeyCreate(name="solo", role="admin"), local_actor())
        protected_request(c)
        spec = ApprovalCreate(kind="model_alias", name="chat-model", label="champion", version=2)
        own = c.governance.request(spec, Actor(name="solo", role="admin"))
        with TestClient(app, follow_redirects=False) as tc:
            tc.post("/ui/login", data={"key": admin.secret})
            assert f"/approvals/{own.id}/approve" in tc.get("/ui/governance").text
            page = follow(tc, tc.post(f"/ui/governance/approvals/{own.id}/approve", data={}))
        assert flash(page).startswith("ok: chat-model champion → v2 approved")
        assert c.models.get("chat-model").aliases == {"champion": 2}
    finally:
        c.close()


def test_unknown_approval_and_long_comment_say_why(ui: TestClient, c: Container) -> None:
    approval = protected_request(c)
    unknown = ui.post("/ui/governance/approvals/apr_nope/approve", data={})
    assert flash(follow(ui, unknown)) == "error: no approval with id 'apr_nope'"
    long = ui.post(
        f"/ui/governance/approvals/{approval.id}/approve", data={"comment": "x" * 10_001}
    )
    assert flash(follow(ui, long)) == "error: the comment is over 10,000 characters"
    assert c.governance.get_approval(approval.id).status == "pending"
    assert c.models.get("chat-model").aliases == {"champion": 1}


@pytest.mark.parametrize("who", ["viewer_ui", "editor_ui"])
def test_only_admins_see_and_use_the_decision_forms(
    request: pytest.FixtureRequest, who: str, c: Container
) -> None:
    client: TestClient = request.getfixturevalue(who)
    approval = protected_request(c)
    text = client.get("/ui/governance").text
    assert approval.id in text and "/approve" not in text and "/reject" not in text
    assert "an admin other than the requester decides" in text
    for verb in ("approve", "reject"):
        response = client.post(f"/ui/governance/approvals/{approval.id}/{verb}", data={})
        assert response.status_code == 403
        assert "this needs &#39;admin&#39;" in response.text
    assert c.governance.get_approval(approval.id).status == "pending"


def test_a_decision_from_another_site_is_refused(ui: TestClient, c: Container) -> None:
    approval = protected_request(c)
    response = ui.post(
        f"/ui/governance/approvals/{approval.id}/approve",
        data={},
        headers={"Origin": "https://evil.example"},
    )
    assert response.status_code == 403
    assert c.governance.get_approval(approval.id).status == "pending"


# --- the audit log ---------------------------------------------------------------------------


def test_the_audit_log_filters_and_pages(ui: TestClient, c: Container) -> None:
    model = c.models.create(ModelCreate(name="chat-model"), ADMIN)
    c.models.create_version("chat-model", ModelVersionCreate(), ADMIN)
    c.models.set_stage("chat-model", 1, "production", ADMIN)
    version = c.models.get_version("chat-model", 1)
    text = unescape(section(ui.get("/ui/governance").text, "Audit log"))
    assert "model.create" in text and "model_version.create" in text
    assert "stage: none → production" in text
    assert "api_key.create" in text  # the keys of the fixture
    only = section(ui.get(f"/ui/governance?entity_id={version.id}").text, "Audit log")
    assert "model_version.create" in only and "model_version.stage" in only
    assert "model.create" not in only and "clear filters" in only
    assert f'href="/ui/governance/lineage/{version.id}"' in only
    by = section(ui.get("/ui/governance?actor=seeder").text, "Audit log")
    assert "model.create" in by and "api_key.create" not in by
    assert f"/ui/governance?entity_id={model.id}" in by
    # newest first: the stage move and the version, then (older) the model
    first = section(ui.get("/ui/governance?actor=seeder&limit=2").text, "Audit log")
    assert "model_version.stage" in first and "model.create" not in first
    assert first.index("model_version.stage") < first.index("model_version.create")
    next_page = re.search(r'href="([^"]*before_id=\d+[^"]*)#audit">older', first)
    assert next_page, first
    second = ui.get(unescape(next_page.group(1))).text
    second_log = section(second, "Audit log")
    assert "model.create" in second_log and "model_version.stage" not in second_log
    assert "newest" in second_log and "actor=seeder" in second_log


def test_bad_audit_queries_are_422_pages(ui: TestClient) -> None:
    for query in ("limit=0", "limit=501", "before_id=-1", "entity_id=" + "x" * 201, "pending=0"):
        response = ui.get(f"/ui/governance?{query}")
        assert response.status_code == 422, query
        assert response.headers["content-type"].startswith("text/html")


def test_a_hostile_actor_name_is_escaped(app: FastAPI, ui: TestClient, c: Container) -> None:
    c.keys.create(ApiKeyCreate(name=HOSTILE, role="viewer"), Actor(name=HOSTILE, role="admin"))
    text = ui.get("/ui/governance").text
    assert HOSTILE not in text and "&lt;script&gt;x&lt;/script&gt;" in text
    assert "actor=%3Cscript%3Ex%3C%2Fscript%3E" in text  # the filter link is URL-quoted
    filtered = ui.get("/ui/governance", params={"actor": HOSTILE})
    assert filtered.status_code == 200 and HOSTILE not in filtered.text
    assert "api_key.create" in section(filtered.text, "Audit log")


# --- lineage ---------------------------------------------------------------------------------


def seed_lineage(c: Container) -> dict[str, str]:
    rows = DatasetVersionCreate(rows=[{"text": "hi"}])
    dsv = c.datasets.create_version("support-data", rows, ADMIN)
    prv = c.prompts.create_version("support-prompt", PromptVersionCreate(template="Hi"), ADMIN)
    inputs = [RunInput(id=dsv.id, role="train"), RunInput(id=prv.id)]
    run = c.runs.create(RunCreate(name=HOSTILE, kind="finetune", inputs=inputs), ADMIN)
    mv = c.models.create_version("chat-model", ModelVersionCreate(run_id=run.id), ADMIN)
    return {"dsv": dsv.id, "prv": prv.id, "run": run.id, "mv": mv.id}


def test_the_lineage_page_splits_upstream_and_downstream(ui: TestClient, c: Container) -> None:
    ids = seed_lineage(c)
    page = ui.get(f"/ui/governance/lineage/{ids['run']}")
    assert page.status_code == 200
    text = page.text
    assert HOSTILE not in text and "Lineage of <a href" in text
    up = text.split("Upstream")[1].split("Downstream")[0]
    down = text.split("Downstream")[1].split("<h2>Edges</h2>")[0]
    assert 'href="/ui/datasets/support-data/versions/1">support-data:v1</a>' in up
    assert 'href="/ui/prompts/support-prompt">support-prompt:v1</a>' in up
    assert "chat-model" not in up
    assert 'href="/ui/models/chat-model/versions/1">chat-model:v1</a>' in down
    assert "support-data" not in down
    edges = section(text, "Edges")
    assert "<code>train</code>" in edges and "<code>produced</code>" in edges
    assert "<code>input</code>" in edges
    assert f'href="/ui/runs/{ids["run"]}">&lt;script&gt;x&lt;/script&gt;</a>' in edges
    assert "run.create" in section(text, "Audit entries")


def test_the_lineage_page_counts_hops(ui: TestClient, c: Container) -> None:
    ids = seed_lineage(c)
    text = ui.get(f"/ui/governance/lineage/{ids['mv']}").text
    up = text.split("Upstream")[1].split("Downstream")[0]
    rows = re.findall(r'<tr><td>.*?</td><td>(.*?)</td><td class="num">(\d+)</td>', up, re.S)
    hops = {unescape(re.sub("<.*?>", "", label)): int(n) for label, n in rows}
    assert hops == {HOSTILE: 1, "support-data:v1": 2, "support-prompt:v1": 2}
    assert "Nothing downstream yet" in text


def test_unknown_entities_are_404_pages(ui: TestClient) -> None:
    for entity_id in ("mv_01JD3K6Z8ZQ4N2X5C9V7B1M0PA", "garbage", "x" * 201):
        response = ui.get(f"/ui/governance/lineage/{entity_id}")
        assert response.status_code in (404, 422), entity_id
        assert response.headers["content-type"].startswith("text/html")
    assert (
        "no model version with id"
        in ui.get("/ui/governance/lineage/mv_01JD3K6Z8ZQ4N2X5C9V7B1M0PA").text
    )
    assert "is not a registered entity id" in ui.get("/ui/governance/lineage/garbage").text


def test_the_lineage_lookup_quotes_the_id(ui: TestClient, c: Container) -> None:
    ids = seed_lineage(c)
    found = ui.get("/ui/governance/lineage", params={"entity_id": f" {ids['mv']} "})
    assert found.headers["location"] == f"/ui/governance/lineage/{ids['mv']}"
    odd = ui.get("/ui/governance/lineage", params={"entity_id": "a b/<c>"})
    assert odd.headers["location"] == "/ui/governance/lineage/a%20b%2F%3Cc%3E"
    assert ui.get(odd.headers["location"]).status_code == 404
    empty = ui.get("/ui/governance/lineage?entity_id=")
    assert flash(follow(ui, empty)) == "error: type an entity id to see its lineage"
