"""The ASGI application: ``create_app(settings)`` builds the container once and mounts the routes.

Settings are built here (an edge) when not given. Everything but health needs an API key; the
OpenAPI document is served to authenticated callers at ``/openapi.json``.

Under ``llmloop serve --workers N`` the environment names prometheus_client's multiprocess
folder (``PROMETHEUS_MULTIPROC_DIR``, read by prometheus_client itself at import): the gateway's
``/metrics`` then sums every worker's (``services/gateway/metrics.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
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
from llmloop.api.routes import otlp as otlp_routes
from llmloop.api.routes import rollout as rollout_routes
from llmloop.config import Settings, load_settings
from llmloop.services.container import Container
from llmloop.ui import pages as ui_pages
from llmloop.ui import web as ui_web


def create_app(settings: Settings | None = None, container: Container | None = None) -> FastAPI:
    """The llmloop server: REST API, OpenAI-compatible gateway and the dashboard (``/ui``)."""
    settings = settings or (container.settings if container else load_settings())
    container = container or Container(settings)
    container.store  # noqa: B018 - open the store now: an outdated schema stops start-up
    metrics_dir = os.environ.get(METRICS_DIR_ENV) or None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await container.gateway.manager.start()
        checks = monitoring_routes.BackgroundChecks(container)  # drift, alerts, triggers
        checks.start()
        with server_gc(settings.server_gc_threshold), shared_metrics(container, metrics_dir):
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
    for loop_module in (feedback_routes, annotation_routes, monitoring_routes, alert_routes,
                        rollout_routes, otlp_routes):  # fmt: skip
        app.include_router(loop_module.router)

    ui_web.install(app, ui_pages.routers())

    @app.get("/openapi.json", include_in_schema=False, dependencies=[Depends(get_actor)])
    def openapi() -> Any:
        return JSONResponse(app.openapi())

    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.enable_fast_path(settings.max_body_bytes)  # hot /v1 routes skip FastAPI's stack

    return app


METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


@contextmanager
def shared_metrics(container: Container, metrics_dir: str | None) -> Iterator[None]:
    """In multiprocess mode (``metrics_dir``): this worker's load gauges are kept fresh while it
    serves, and its live gauges leave the sums when it stops."""
    if not metrics_dir:
        yield
        return
    from prometheus_client import multiprocess

    gateway = container.gateway
    gateway.metrics.multiprocess_dir = metrics_dir
    task = asyncio.get_running_loop().create_task(gateway_admin.sample_load_every(gateway))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(OSError):
            multiprocess.mark_process_dead(os.getpid(), metrics_dir)


@contextmanager
def server_gc(threshold: int) -> Iterator[None]:
    """Tune the garbage collector while the server runs (``threshold`` 0: leave it alone).

    What start-up built (modules, routes, loaded engines) is frozen: no collection walks it
    again. The youngest generation is collected after ``threshold`` new objects instead of 700:
    each collection walks the objects of every request in flight, so collecting 70 times less
    often walks them 70 times less, while the garbage of a request is mostly freed by reference
    counting long before. Python's settings come back when the server stops.
    """
    if threshold <= 0:
        yield
        return
    before = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(threshold, before[1], before[2])
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()
