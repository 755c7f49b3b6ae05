"""Schema-driven fuzzing of the REST API: schemathesis generates requests from our own OpenAPI
document (valid and invalid) and no response may be a 5xx."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from llmloop.api.app import create_app
from llmloop.config import load_settings
from llmloop.core.governance import ApiKeyCreate
from llmloop.services.actors import local_actor

_home = Path(tempfile.mkdtemp(prefix="llmloop-fuzz-"))
app = create_app(load_settings({"home": str(_home)}, env={}))
ADMIN = app.state.container.keys.create(ApiKeyCreate(name="fuzz", role="admin"), local_actor())
schema = schemathesis.openapi.from_dict(app.openapi())


@pytest.fixture(scope="module", autouse=True)
def _close_app() -> object:
    yield
    app.state.container.close()


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case: schemathesis.Case) -> None:
    case.headers = {**(case.headers or {}), "Authorization": f"Bearer {ADMIN.secret}"}
    response = case.call(app=app)
    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.text}"
    if response.status_code >= 400:
        body = response.json()
        if case.path.startswith("/v1/"):  # the OpenAI-compatible routes answer OpenAI's shape
            assert body["error"]["message"] and body["error"]["type"]
        else:
            assert body["status"] == response.status_code and body["detail"]


def test_fuzzing_reaches_the_handlers() -> None:
    """Guard against a fuzz run that only ever sees 401s: a known-good call succeeds."""
    case = schema["/api/datasets"]["POST"].Case(body={"name": "fuzz-probe"})
    case.headers = {"Authorization": f"Bearer {ADMIN.secret}"}
    assert case.call(app=app).status_code == 201
