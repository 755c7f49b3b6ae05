"""The REST API through the real app: the walkthrough over HTTP, auth, and every bad path."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from llmloop.client import Client
from llmloop.client.transport import HttpTransport
from llmloop.errors import ApprovalRequiredError, NotFoundError, PermissionDeniedError


def sdk(app: FastAPI, key: str) -> Client:
    client = Client.__new__(Client)
    client._t = HttpTransport("http://testserver", key, client=TestClient(app))
    return client


def test_walkthrough_over_http(app: FastAPI, keys: dict[str, str]) -> None:
    alice, bob = sdk(app, keys["admin"]), sdk(app, keys["editor"])
    dv = alice.create_dataset_version("tickets", [{"prompt": "a", "response": "b"}])
    assert (
        dv.version == 1
        and dv.shape == "instruction"
        and dv.schema_ == {"prompt": "string", "response": "string"}
    )
    alice.create_prompt_version("answer", "Q: {{ q }}")
    alice.create_prompt_version("answer", "Kindly, Q: {{ q }}", params={"temperature": 0.1})
    alice.set_prompt_label("answer", "production", 2)
    assert alice.render_prompt("answer", {"q": "hi"}).text == "Kindly, Q: hi"
    assert "+Kindly" in alice.diff_prompt("answer", 1, 2)["template_diff"]
    run = alice.create_run(name="ft", kind="finetune", inputs=[dv.id])
    alice.log_metrics(run.id, {"loss": 2.0}, step=1)
    alice.log_metrics(run.id, {"loss": 1.0}, step=2)
    assert [p["value"] for p in alice.metric_series(run.id)["loss"]] == [2.0, 1.0]
    alice.finish_run(run.id)
    mv1 = alice.create_model_version("bot", base_model="tiny", run_id=run.id, inputs=[dv.id])
    alice.create_model_version("bot", base_model=mv1.id, run_id=run.id)
    alice.set_model_alias("bot", "champion", 1)
    alice.protect("model_alias", "bot", "champion")
    try:
        alice.set_model_alias("bot", "champion", 2)
        raise AssertionError("protected alias moved")
    except ApprovalRequiredError as exc:
        assert "protected" in str(exc)
    request = bob.request_approval("model_alias", "bot", "champion", 2, "better")
    try:
        bob.approve(request.id)
        raise AssertionError("an editor approved")
    except PermissionDeniedError:
        pass
    assert alice.approve(request.id, "ok").status == "approved"
    assert alice.get_model("bot").aliases == {"champion": 2}
    graph = alice.lineage(alice.get_model_version("bot", "champion").id, direction="up")
    types = {n.type for n in graph.nodes}
    assert {"dataset_version", "run", "model_version"} <= types
    actions = [e.action for e in alice.audit(limit=1000)]
    assert "approval.approved" in actions and "model_alias.move" in actions
    try:
        alice.get_dataset("nope")
        raise AssertionError("missing dataset found")
    except NotFoundError:
        pass


def test_everything_but_health_needs_a_key(app: FastAPI) -> None:
    with TestClient(app) as tc:
        assert tc.get("/health").status_code == 200
        assert tc.get("/ready").json() == {"status": "ready"}
        for path in ("/api/datasets", "/api/runs", "/api/audit", "/openapi.json"):
            r = tc.get(path)
            assert r.status_code == 401
            assert r.headers["content-type"].startswith("application/problem+json")
        bad = tc.get("/api/datasets", headers={"Authorization": "Bearer llk_nope_nope"})
        assert bad.status_code == 401 and bad.json()["code"] == "unauthenticated"


def test_roles_are_enforced(app: FastAPI, keys: dict[str, str]) -> None:
    with TestClient(app, headers={"X-API-Key": keys["viewer"]}) as tc:
        assert tc.get("/api/datasets").status_code == 200
        r = tc.post("/api/datasets", json={"name": "x"})
        assert r.status_code == 403 and r.json()["code"] == "forbidden"
        assert tc.post("/api/keys", json={"name": "k"}).status_code == 403


def test_revoked_key_is_refused(client: TestClient, app: FastAPI) -> None:
    created = client.post("/api/keys", json={"name": "temp", "role": "viewer"}).json()
    secret = created["secret"]
    listed = client.get("/api/keys").json()
    assert all("secret" not in k and "hash" not in k for k in listed)
    assert client.post(f"/api/keys/{created['id']}/revoke").status_code == 200
    with TestClient(app) as tc:
        r = tc.get("/api/datasets", headers={"Authorization": f"Bearer {secret}"})
        assert r.status_code == 401 and "revoked" in r.json()["detail"]


def test_bad_inputs_are_4xx_problems(client: TestClient) -> None:
    cases = [
        client.post("/api/datasets", json={}),
        client.post("/api/datasets", json={"name": "../etc"}),
        client.post(
            "/api/datasets", content=b"{not json", headers={"content-type": "application/json"}
        ),
        client.post("/api/datasets/x/versions", json={"rows": "nope"}),
        client.post("/api/prompts/p/versions", json={"template": "{{ unclosed"}),
        client.post("/api/prompts/p/versions", json={"template": "{{ a }}", "variables": ["b"]}),
        client.get("/api/datasets/missing"),
        client.get("/api/runs/run_00000000000000000000000000"),
        client.get("/api/runs/not-an-id"),
        client.get("/api/models/m/versions/0"),
        client.get("/api/lineage/zz_00000000000000000000000000"),
        client.put("/api/models/none/aliases", json={"alias": "Bad Alias", "version": 1}),
        client.post("/api/runs", json={"kind": "nonsense"}),
        client.post("/api/runs", json={"inputs": [{"id": "dsv_00000000000000000000000000"}]}),
        client.get("/api/no/such/route"),
    ]
    for response in cases:
        assert 400 <= response.status_code < 500, (response.request.url, response.text)
        body = response.json()
        assert body["status"] == response.status_code and body["detail"] and body["title"]


def test_duplicates_and_immutability(client: TestClient) -> None:
    rows = {"rows": [{"text": "one"}, {"text": "two"}]}
    assert client.post("/api/datasets/d/versions", json=rows).status_code == 201
    again = client.post("/api/datasets/d/versions", json=rows)
    assert again.status_code == 409 and again.json()["existing_version"] == 1
    assert client.post("/api/datasets", json={"name": "d"}).status_code == 409
    run = client.post("/api/runs", json={"name": "r"}).json()
    assert client.post(f"/api/runs/{run['id']}/finish", json={}).status_code == 200
    late = client.post(
        f"/api/runs/{run['id']}/metrics", json={"points": [{"key": "x", "value": 1}]}
    )
    assert late.status_code == 409
    clash = client.patch(f"/api/runs/{run['id']}/params", json={"lr": 1})
    assert clash.status_code == 200
    assert client.patch(f"/api/runs/{run['id']}/params", json={"lr": 2}).status_code == 409


def test_failed_request_writes_nothing(client: TestClient, app: FastAPI) -> None:
    before = len(client.get("/api/audit", params={"limit": 1000}).json())
    r = client.post("/api/models/m/versions", json={"run_id": "run_00000000000000000000000000"})
    assert r.status_code == 404
    assert len(client.get("/api/audit", params={"limit": 1000}).json()) == before
    assert client.get("/api/models/m").status_code in (200, 404)


def test_oversized_body_gets_413(client: TestClient) -> None:
    big = b'{"rows": [' + b'{"text": "x"},' * 700_000 + b'{"text": "y"}]}'
    r = client.post(
        "/api/datasets/big/versions", content=big, headers={"content-type": "application/json"}
    )
    assert r.status_code == 413 and r.json()["code"] == "payload_too_large"


def test_openapi_is_served_to_key_holders(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert "/api/datasets/{name}/versions" in spec["paths"]
