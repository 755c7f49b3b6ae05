"""The real app in process, and a browser-like client signed in to the dashboard."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient


@pytest.fixture
def ui(app: FastAPI, keys: dict[str, str]) -> Iterator[TestClient]:
    """Signed in as admin through the sign-in form, as a browser would be (cookie, no header)."""
    with TestClient(app, follow_redirects=False) as tc:
        response = tc.post("/ui/login", data={"key": keys["admin"], "next": "/ui/"})
        assert response.status_code == 303, response.text
        yield tc


@pytest.fixture
def viewer_ui(app: FastAPI, keys: dict[str, str]) -> Iterator[TestClient]:
    with TestClient(app, follow_redirects=False) as tc:
        assert tc.post("/ui/login", data={"key": keys["viewer"]}).status_code == 303
        yield tc
