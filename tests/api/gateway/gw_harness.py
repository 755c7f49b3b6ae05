"""The in-process gateway the tests drive (the ``gw`` fixture in conftest.py builds it) and the
helpers that declare deployments. Tests import these from here, not from ``conftest``: another
test folder's conftest may hold that module name."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import orjson
from fastapi import FastAPI

from llmloop.core.deployments import DeploymentSpec
from llmloop.core.governance import ApiKeyCreate
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

    async def raw_stream(
        self, body: dict[str, Any], chunks_before_leaving: int, key: str | None = None
    ) -> int:
        """Drive the ASGI app directly, disconnect after some body chunks; returns chunks seen."""
        payload = orjson.dumps(body)
        leave = asyncio.Event()
        seen = 0

        async def receive() -> dict[str, Any]:
            nonlocal payload
            if payload:
                data, payload = payload, b""
                return {"type": "http.request", "body": data, "more_body": False}
            await leave.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            nonlocal seen
            if message["type"] == "http.response.body" and message.get("body"):
                seen += 1
                if seen >= chunks_before_leaving:
                    leave.set()

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": "POST", "scheme": "http", "path": "/v1/chat/completions",
                 "raw_path": b"/v1/chat/completions", "query_string": b"", "root_path": "",
                 "headers": [(b"authorization", f"Bearer {key or self.key}".encode()),
                             (b"content-type", b"application/json")],
                 "client": ("127.0.0.1", 1), "server": ("gw", 80)}  # fmt: skip
        await asyncio.wait_for(self.app(scope, receive, send), 5)
        return seen


def echo(prefix: str = "", **options: Any) -> dict[str, Any]:
    return {"engine": {"kind": "echo", "model": "echo", "options": {"prefix": prefix, **options}}}


def probe(model: str, **options: Any) -> dict[str, Any]:
    return {"engine": {"kind": "probe", "model": model, "options": options}}
