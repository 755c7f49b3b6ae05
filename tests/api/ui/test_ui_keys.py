"""The keys page: admins only; a key created there shows its secret once and works; limits are
validated and stored; revoking refuses the key's next request; spend shows against the budget."""

from __future__ import annotations

import re

from fastapi import FastAPI
from fastapi.testclient import TestClient

from llmloop.core.deployments import DeploymentSpec
from llmloop.services.actors import local_actor


def _keys(app: FastAPI) -> dict[str, object]:
    return {k.name: k for k in app.state.container.keys.list(include_revoked=True)}


def test_only_admins_see_and_use_the_keys_page(ui: TestClient, viewer_ui: TestClient) -> None:
    page = ui.get("/ui/keys")
    assert page.status_code == 200 and "viewer-key" in page.text and "editor-key" in page.text
    assert 'href="/ui/keys"' in page.text
    refused = viewer_ui.get("/ui/keys")
    assert refused.status_code == 403 and "admin" in refused.text
    assert 'href="/ui/keys"' not in viewer_ui.get("/ui/").text  # not in a viewer's nav
    assert viewer_ui.post("/ui/keys", data={"name": "sneaky"}).status_code == 403


def test_a_new_key_shows_its_secret_once_and_works(app: FastAPI, ui: TestClient) -> None:
    created = ui.post("/ui/keys", data={"name": "shop <app>", "role": "editor", "rpm": "60",
                                         "budget_usd": "2.5"})  # fmt: skip
    assert created.status_code == 201
    secret = re.search(r'<pre id="new-secret">(llk_[^<]+)</pre>', created.text)
    assert secret is not None
    assert "shop &lt;app&gt;" in created.text and "<app>" not in created.text
    key = _keys(app)["shop <app>"]
    assert key.role == "editor" and key.limits == {"rpm": 60, "budget_usd": 2.5}  # type: ignore[attr-defined]
    assert secret.group(1) not in ui.get("/ui/keys").text  # never shown again
    with TestClient(app) as api:
        headers = {"Authorization": f"Bearer {secret.group(1)}"}
        assert api.get("/api/models", headers=headers).status_code == 200


def test_bad_new_keys_keep_the_form_and_create_nothing(app: FastAPI, ui: TestClient) -> None:
    before = len(_keys(app))
    for data, message in [
        ({"name": ""}, "a key needs a name"),
        ({"name": "x", "role": "root"}, "the role is one of"),
        ({"name": "x", "rpm": "fast"}, "requests per minute must be a number"),
        ({"name": "x", "tpm": "1.5"}, "must be a whole number"),
        ({"name": "x", "budget_usd": "-1"}, "finite number of 0 or more"),
        ({"name": "x", "budget_usd": "nan"}, "finite number of 0 or more"),
        ({"name": "x" * 129}, "a key needs a name"),
    ]:
        page = ui.post("/ui/keys", data=data)
        assert page.status_code == 422, data
        assert message in page.text, (data, page.text[-500:])
        assert 'id="new-secret"' not in page.text
    assert len(_keys(app)) == before


def test_limits_are_set_and_cleared(app: FastAPI, ui: TestClient) -> None:
    viewer = _keys(app)["viewer-key"]
    done = ui.post(f"/ui/keys/{viewer.id}/limits", data={"tpm": "1000", "max_concurrent": "2"})  # type: ignore[attr-defined]
    assert done.status_code == 303
    assert (
        "Limits of &#39;viewer-key&#39; are now: tpm=1000, max_concurrent=2."
        in ui.get(done.headers["location"]).text
    )
    assert _keys(app)["viewer-key"].limits == {"tpm": 1000, "max_concurrent": 2}  # type: ignore[attr-defined]
    bad = ui.post(f"/ui/keys/{viewer.id}/limits", data={"rpm": "-5"})  # type: ignore[attr-defined]
    assert "finite number of 0 or more" in ui.get(bad.headers["location"]).text
    assert _keys(app)["viewer-key"].limits == {"tpm": 1000, "max_concurrent": 2}  # type: ignore[attr-defined]
    ui.post(f"/ui/keys/{viewer.id}/limits", data={})  # type: ignore[attr-defined]
    assert _keys(app)["viewer-key"].limits == {}  # type: ignore[attr-defined]
    unknown = ui.post("/ui/keys/key_nope/limits", data={"rpm": "1"})
    assert "no API key with id" in ui.get(unknown.headers["location"]).text


def test_revoking_refuses_the_next_request(
    app: FastAPI, ui: TestClient, keys: dict[str, str]
) -> None:
    editor = _keys(app)["editor-key"]
    done = ui.post(f"/ui/keys/{editor.id}/revoke")  # type: ignore[attr-defined]
    assert "Key &#39;editor-key&#39; is revoked" in ui.get(done.headers["location"]).text
    with TestClient(app) as api:
        headers = {"Authorization": f"Bearer {keys['editor']}"}
        assert api.get("/api/models", headers=headers).status_code == 401
    again = ui.post(f"/ui/keys/{editor.id}/revoke")  # type: ignore[attr-defined]
    assert "already revoked" in ui.get(again.headers["location"]).text
    assert "revoked</span>" in ui.get("/ui/keys").text


def test_spend_shows_against_the_budget(app: FastAPI, ui: TestClient) -> None:
    c = app.state.container
    spec = {"name": "paid", "targets": [{"engine": {"kind": "echo", "options": {
        "price_in_per_1k": 1.0, "price_out_per_1k": 1.0}}}]}  # fmt: skip
    c.deployments.apply(DeploymentSpec.model_validate(spec), local_actor())
    created = ui.post("/ui/keys", data={"name": "spender", "budget_usd": "1000"})
    secret = re.search(r'<pre id="new-secret">(llk_[^<]+)</pre>', created.text)
    assert secret is not None
    answer = ui.post(
        "/v1/chat/completions",
        json={"model": "paid", "messages": [{"role": "user", "content": "hello there"}]},
        headers={"Authorization": f"Bearer {secret.group(1)}"},
    )
    assert answer.status_code == 200, answer.text
    row = ui.get("/ui/keys").text.split("spender", 1)[1].split("</tr>", 1)[0]
    spent = re.search(r"\$([0-9.,]+)<br><span class=\"muted\">([0-9.]+) % of \$1,000", row)
    assert spent is not None, row
    assert float(spent.group(1).replace(",", "")) > 0
