"""The gateway in process: a fresh SQLite home, an admin key, the probe engine registered, the
official ``openai`` client over httpx's ASGITransport, and helpers to declare deployments."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from fastapi import FastAPI

sys.path.insert(0, str(Path(__file__).parent))

import gw_probe

from llmloop.api.app import create_app
from llmloop.config import load_settings
from llmloop.core.deployments import DeploymentSpec
from llmloop.core.governance import ApiKeyCreate
from llmloop.plugins import build_registry
from llmloop.services.actors import local_actor
from llmloop.services.container import Container


@dataclass
class Gateway:
    app: FastAPI
    container: Container
    key: str
    http: httpx.AsyncClient
    client: openai.AsyncOpenAI

    async def deploy(self, spec: dict[str, Any]) -> None:
        dep = DeploymentSpec.model_validate(spec)
        self.container.deployments.apply(dep, local_actor())
        await self.container.gateway.manager.reload(dep.name)

    def new_key(self, role: str = "viewer", limits: dict[str, Any] | None = None) -> str:
        spec = ApiKeyCreate(name=f"{role}-extra", role=role, limits=limits or {})
        return self.container.keys.create(spec, local_actor()).secret

    async def traces(self, **where: Any) -> list[dict[str, Any]]:
        await self.container.gateway.writer.flush()
        return [t.model_dump() for t in self.container.gateway.traces.list(limit=1000, **where)]


def echo(prefix: str = "", **options: Any) -> dict[str, Any]:
    return {"engine": {"kind": "echo", "model": "echo", "options": {"prefix": prefix, **options}}}


def probe(model: str, **options: Any) -> dict[str, Any]:
    return {"engine": {"kind": "probe", "model": model, "options": options}}


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
