"""The real app in process, on a fresh SQLite home, with an admin, an editor and a viewer key."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from llmloop.api.app import create_app
from llmloop.config import load_settings
from llmloop.core.governance import ApiKeyCreate
from llmloop.services.actors import local_actor


@pytest.fixture
def app(tmp_path: Path) -> Iterator[FastAPI]:
    application = create_app(load_settings({"home": str(tmp_path)}, env={}))
    yield application
    application.state.container.close()


@pytest.fixture
def keys(app: FastAPI) -> dict[str, str]:
    service = app.state.container.keys
    return {
        role: service.create(ApiKeyCreate(name=f"{role}-key", role=role), local_actor()).secret
        for role in ("admin", "editor", "viewer")
    }


@pytest.fixture
def client(app: FastAPI, keys: dict[str, str]) -> Iterator[TestClient]:
    with TestClient(app, headers={"Authorization": f"Bearer {keys['admin']}"}) as tc:
        yield tc
