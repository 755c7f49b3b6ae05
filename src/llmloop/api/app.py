"""The ASGI application: ``create_app(settings)`` builds the container once and mounts the routes.

Settings are built here (an edge) when not given. Everything but health needs an API key; the
OpenAPI document is served to authenticated callers at ``/openapi.json``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse

from llmloop import __version__
from llmloop.api.deps import get_actor
from llmloop.api.gateway import admin as gateway_admin
from llmloop.api.gateway import routes as gateway_routes
from llmloop.api.gateway.fastpath import GatewayApp
from llmloop.api.limits import BodySizeLimit
from llmloop.api.problems import install_problem_handlers
from llmloop.api.routes import alerts as alert_routes
from llmloop.api.routes import annotation as annotation_routes
from llmloop.api.routes import data, datasets, governance, health, keys, models, prompts, runs
from llmloop.api.routes import feedback as feedback_routes
from llmloop.api.routes import monitoring as monitoring_routes
from llmloop.config import Settings, load_settings
from llmloop.services.container import Container


def create_app(settings: Settings | None = None, container: Container | None = None) -> FastAPI:
    """The llmloop server: REST API (and the gateway and UI as they join)."""
    settings = settings or (container.settings if container else load_settings())
    container = container or Container(settings)
    container.store  # noqa: B018 - open the store now: an outdated schema stops start-up

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await container.gateway.manager.start()
        checks = monitoring_routes.BackgroundChecks(container)  # drift, alerts, triggers
        checks.start()
        yield
        await checks.aclose()
        if "gateway" in container.__dict__:
            await container.gateway.aclose()  # drain shadows, close engines, flush traces
        container.close()

    app = GatewayApp(
        title="llmloop",
        version=__version__,
        description="The closed loop of LLMOps: registry, gateway, evaluation and monitoring.",
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.container = container
    app.state.settings = settings
    install_problem_handlers(app)
    for module in (health, datasets, data, prompts, runs, models, governance, keys):
        app.include_router(module.router)
    app.include_router(gateway_routes.router)
    app.include_router(gateway_admin.router)
    for loop_module in (feedback_routes, annotation_routes, monitoring_routes, alert_routes):
        app.include_router(loop_module.router)

    @app.get("/openapi.json", include_in_schema=False, dependencies=[Depends(get_actor)])
    def openapi() -> Any:
        return JSONResponse(app.openapi())

    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.enable_fast_path(settings.max_body_bytes)  # hot /v1 routes skip FastAPI's stack

    return app
