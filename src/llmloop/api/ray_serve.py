"""Scale-out with Ray Serve: the same llmloop app (REST API, gateway, engines) in several replicas.

:func:`build_ray_app` returns a Ray Serve application whose ingress deployment serves the app
``create_app`` builds, once per replica: each replica rebuilds its Settings from a plain dict (no
environment is read below this edge) and builds its own container, so engines load per replica.
Ray runs the app's lifespan in each replica, so a stopped replica drains and flushes its traces;
Ray's health check calls the app's ``/health`` in process. Every response carries
``x-llmloop-replica: host:pid`` so an operator (and the tests) can tell replicas apart.

What this module does not do: share state between replicas. With more than one replica, per-key
limits need Redis (``LLMLOOP_REDIS_URL``) and the store must be shared: PostgreSQL, or one SQLite
file with every replica on the same node. Engines on GPUs need ``{"num_gpus": 1}`` (or a fraction)
in ``ray_actor_options``. ``ray`` is optional (the ``ray`` extra); this module is imported only
when Ray Serve is used, and it raises :class:`MissingExtraError` without it.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from llmloop.config import Settings
from llmloop.errors import ConfigError, LlmloopError, MissingExtraError

if TYPE_CHECKING:
    from fastapi import FastAPI
    from ray.serve import Application

REPLICA_HEADER = "x-llmloop-replica"
DEPLOYMENT_NAME = "llmloop"
HEALTH_PATH = "/health"

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]


def import_serve() -> Any:
    """``ray.serve``, or a clear "install llmloop[ray]" error."""
    try:
        from ray import serve
    except ImportError as exc:  # no ray, or ray without the serve extra (grpc, ...)
        raise MissingExtraError("ray", "Ray Serve deployment") from exc
    return serve


def build_ray_app(
    settings: Settings, replicas: int = 2, ray_actor_options: dict[str, Any] | None = None
) -> Application:
    """A Ray Serve application of ``replicas`` copies of the llmloop app, built from ``settings``.

    Run it with ``serve.run(app, route_prefix="/")``. ``ray_actor_options`` goes to each
    replica's actor, e.g. ``{"num_gpus": 1}`` for an engine on a GPU.
    """
    serve = import_serve()
    if replicas < 1:
        raise ConfigError(f"replicas must be at least 1, not {replicas}")
    settings_dict = settings.model_dump(mode="json")

    def build_app() -> FastAPI:  # runs in each replica, when it starts
        return build_replica_app(settings_dict)

    @serve.ingress(build_app)
    class LlmloopIngress:
        """One replica: Ray wraps the app (routes, lifespan) around this class."""

        app: ASGIApp  # set by Ray's ASGI wrapper

        async def check_health(self) -> None:
            await probe_health(self.app)

    deployment = serve.deployment(
        LlmloopIngress,
        name=DEPLOYMENT_NAME,
        num_replicas=replicas,
        ray_actor_options=dict(ray_actor_options or {}),
    )
    return deployment.bind()  # type: ignore[no-any-return]


def build_replica_app(settings_dict: dict[str, Any]) -> FastAPI:
    """One replica's app: its own Settings (from the dict, no env read) and its own container."""
    from llmloop.api.app import create_app

    settings = Settings.model_validate(settings_dict)
    app = create_app(settings)
    name = f"{socket.gethostname()}:{os.getpid()}"
    app.add_middleware(ReplicaHeader, value=name)
    fast_path = getattr(app, "fast_path", None)  # GatewayApp: the hot /v1 routes skip middleware
    if fast_path is not None:
        app.fast_path = ReplicaHeader(fast_path, name)  # type: ignore[attr-defined]
    return app


class ReplicaHeader:
    """Pure ASGI middleware naming the replica that answered in every HTTP response."""

    def __init__(self, app: Any, value: str) -> None:
        self.app = app
        self.header = (REPLICA_HEADER.encode(), value.encode())

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_named(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), self.header]
            await send(message)

        await self.app(scope, receive, send_named)


async def probe_health(app: ASGIApp) -> None:
    """GET ``/health`` in process; raise unless it answers 200 (Ray then replaces the replica)."""
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope: dict[str, Any] = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": HEALTH_PATH, "raw_path": HEALTH_PATH.encode(),
        "root_path": "", "query_string": b"", "headers": [(b"host", b"ray-health-check")],
        "client": ("127.0.0.1", 0), "server": ("127.0.0.1", 0),
    }  # fmt: skip
    await app(scope, receive, send)
    status = next((m["status"] for m in sent if m["type"] == "http.response.start"), None)
    if status != 200:
        raise LlmloopError(f"replica health check: {HEALTH_PATH} answered {status}")
