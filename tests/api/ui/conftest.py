"""The real app in process, and a browser-like client signed in to the dashboard."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from llmloop.api.app import create_app
from llmloop.config import load_settings
from llmloop.services.container import Container


@pytest.fixture
def threaded_app(tmp_path: Path) -> Iterator[FastAPI]:
    """The real app with traces written from a thread of this process (no writer process): for
    pages that read the traces the gateway writes."""
    settings = load_settings(
        {"home": str(tmp_path), "gateway_reload_s": 0, "trace_writer": "thread"}, env={}
    )
    application = create_app(settings)
    yield application
    application.state.container.close()


def _signed_in(app: FastAPI, key: str) -> Iterator[TestClient]:
    """Signed in through the sign-in form, as a browser would be (cookie, no header)."""
    with TestClient(app, follow_redirects=False) as tc:
        response = tc.post("/ui/login", data={"key": key, "next": "/ui/"})
        assert response.status_code == 303, response.text
        yield tc


@pytest.fixture
def ui(app: FastAPI, keys: dict[str, str]) -> Iterator[TestClient]:
    yield from _signed_in(app, keys["admin"])


@pytest.fixture
def editor_ui(app: FastAPI, keys: dict[str, str]) -> Iterator[TestClient]:
    yield from _signed_in(app, keys["editor"])


@pytest.fixture
def viewer_ui(app: FastAPI, keys: dict[str, str]) -> Iterator[TestClient]:
    yield from _signed_in(app, keys["viewer"])


@pytest.fixture
def c(app: FastAPI) -> Container:
    container: Container = app.state.container
    return container
