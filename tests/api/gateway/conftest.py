"""The gateway in process: a fresh SQLite home, an admin key, the probe engine registered, the
official ``openai`` client over httpx's ASGITransport (see gw_harness.py)."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import openai
import pytest

sys.path.insert(0, str(Path(__file__).parent))

import gw_probe
from gw_harness import Gateway, echo

from llmloop.api.app import create_app
from llmloop.config import load_settings
from llmloop.core.governance import ApiKeyCreate
from llmloop.plugins import build_registry
from llmloop.services.actors import local_actor
from llmloop.services.container import Container


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Gateway]:
    gw_probe.reset()
    settings = load_settings(
        {"home": str(tmp_path), "gateway_reload_s": 0, "trace_flush_ms": 20}, env={}
    )
    plugins = build_registry()
    plugins.register("engines", "probe", gw_probe.ProbeEngine)
    container = Container(settings, plugins=plugins)
    app = create_app(settings, container)
    key = container.keys.create(ApiKeyCreate(name="admin", role="admin"), local_actor()).secret
    http = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://gw",
        headers={"Authorization": f"Bearer {key}"}, timeout=30,
    )  # fmt: skip
    client = openai.AsyncOpenAI(
        api_key=key, base_url="http://gw/v1", max_retries=0,
        http_client=httpx.AsyncClient(transport=httpx.ASGITransport(app=app), timeout=30),
    )  # fmt: skip
    g = Gateway(app, container, key, http, client)
    await g.deploy({"name": "chat", "targets": [echo("")]})
    yield g
    await client.close()
    await http.aclose()
    await container.gateway.aclose()
    container.close()
