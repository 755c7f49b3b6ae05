"""Where a model version is served, in the CLI and over REST: ``models show --ref`` has a "served
by" line (and ``served_by`` in its JSON), ``models versions`` a column, ``lineage`` a deployment
node downstream, and archiving a version a deployment still serves warns (exit 0, stderr). REST:
``GET /api/models/NAME/versions/REF/deployments``; unknown models and versions are errors."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient
from tests.cli.conftest import Invoke

from llmloop.api.app import create_app
from llmloop.config import load_settings
from llmloop.core.deployments import DeploymentSpec
from llmloop.core.governance import ApiKeyCreate
from llmloop.core.models import ModelVersionCreate
from llmloop.services.actors import local_actor
from llmloop.services.container import Container

ME = local_actor("ops")


def seed(home: Path) -> list[str]:
    """bot v1..v3, champion -> 1, candidate -> 2; deployment chat serves champion 90% and
    candidate 10% with v1 pinned as its fallback; v3 is served by nothing."""
    c = Container(load_settings({"home": str(home)}, env={}))
    try:
        ids = [
            c.models.create_version("bot", ModelVersionCreate(format="echo"), ME).id
            for _ in range(3)
        ]
        c.models.set_alias("bot", "champion", 1, ME)
        c.models.set_alias("bot", "candidate", 2, ME)
        spec = {
            "name": "chat",
            "targets": [
                {"model": "bot", "alias": "champion", "weight": 0.9},
                {"model": "bot", "alias": "candidate", "weight": 0.1},
            ],
            "fallbacks": [{"model": "bot", "version": 1}],
        }
        c.deployments.apply(DeploymentSpec.model_validate(spec), ME)
        return ids
    finally:
        c.close()


def test_models_show_says_who_serves_the_version(cli: Invoke, home: Path) -> None:
    seed(home)
    text = cli("models", "show", "bot", "--ref", "champion", ok=True).stdout
    assert "served by" in text
    assert "chat: primary 90% via champion, chat: fallback 1 via pinned v1" in text
    assert "no deployment" in cli("models", "show", "bot", "--ref", "3", ok=True).stdout
    data = json.loads(cli("models", "show", "bot", "--ref", "2", "--json", ok=True).stdout)
    assert data["version"] == 2
    [route] = data["served_by"]
    assert route["deployment"] == "chat" and route["role"] == "primary"
    assert (route["ref"], route["pinned"], route["share"]) == ("candidate", False, 0.1)
    plain = json.loads(cli("models", "show", "bot", "--json", ok=True).stdout)
    assert "served_by" not in plain  # the model itself, not a version


def test_models_versions_has_a_served_by_column(cli: Invoke, home: Path) -> None:
    ids = seed(home)
    text = cli("models", "versions", "bot", ok=True).stdout
    assert "served by" in text and "chat: primary 10% via candidate" in text
    data = json.loads(cli("models", "versions", "bot", "--json", ok=True).stdout)
    assert [v["id"] for v in data] == ids
    assert [[r["role"] for r in v["served_by"]] for v in data] == [
        ["primary", "fallback"],
        ["primary"],
        [],
    ]


def test_archiving_a_served_version_warns_and_an_unserved_one_does_not(
    cli: Invoke, home: Path
) -> None:
    seed(home)
    served = cli("models", "stage", "bot", "1", "archived", ok=True)
    assert "version 1 is in stage archived" in served.stdout
    assert "warning:" in served.stderr and "still served" in served.stderr
    assert "chat: primary 90% via champion; chat: fallback 1 via pinned v1" in served.stderr
    quiet = cli("models", "stage", "bot", "3", "archived", ok=True)
    assert quiet.stderr == ""
    staging = cli("models", "stage", "bot", "2", "staging", ok=True)  # only archiving warns
    assert staging.stderr == ""
    as_json = cli("models", "stage", "bot", "2", "archived", "--json", ok=True)
    assert json.loads(as_json.stdout)["stage"] == "archived" and "chat" in as_json.stderr


def test_lineage_shows_the_deployment_downstream(cli: Invoke, home: Path) -> None:
    ids = seed(home)
    text = cli("lineage", ids[0], "--direction", "down", ok=True).stdout
    assert "serves 90% via champion" in text and "fallback via pinned v1" in text
    assert "chat" in text and "deployment dep_" in text
    graph = json.loads(cli("lineage", ids[2], "--json", ok=True).stdout)
    assert graph["edges"] == []


def test_unknown_model_or_version_is_a_clear_error(cli: Invoke, home: Path) -> None:
    seed(home)
    missing = cli("models", "show", "nope", "--ref", "1")
    assert missing.exit_code != 0 and "no model named 'nope'" in missing.output
    no_version = cli("models", "versions", "nope")
    assert no_version.exit_code != 0 and "no model named 'nope'" in no_version.output
    no_alias = cli("models", "show", "bot", "--ref", "nobody")
    assert no_alias.exit_code != 0 and "has no alias 'nobody'" in no_alias.output
    assert "Traceback" not in missing.output + no_version.output + no_alias.output


def test_the_deployments_of_a_version_over_rest(home: Path) -> None:
    ids = seed(home)
    app = create_app(load_settings({"home": str(home)}, env={}))
    container = app.state.container
    key = container.keys.create(ApiKeyCreate(name="v", role="viewer"), local_actor()).secret
    try:
        with TestClient(app, headers={"Authorization": f"Bearer {key}"}) as client:
            served = client.get("/api/models/bot/versions/champion/deployments")
            assert served.status_code == 200, served.text
            assert [(r["role"], r["ref"], r["version_id"]) for r in served.json()] == [
                ("primary", "champion", ids[0]),
                ("fallback", "1", ids[0]),
            ]
            assert client.get("/api/models/bot/versions/3/deployments").json() == []
            for bad in ("bot/versions/9", "bot/versions/nobody", "nope/versions/1"):
                missing = client.get(f"/api/models/{bad}/deployments")
                assert missing.status_code == 404, bad
                assert missing.headers["content-type"].startswith("application/problem+json")
        with TestClient(app) as anonymous:
            assert anonymous.get("/api/models/bot/versions/1/deployments").status_code == 401
    finally:
        container.close()
