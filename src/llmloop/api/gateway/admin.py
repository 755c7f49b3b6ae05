"""REST routes of deployments (``/api/deployments``: list, show, apply, delete, reload), stored
traces (``/api/traces``) and the Prometheus ``/metrics`` endpoint of the gateway.

Changing a deployment reloads it in this process at once (other processes notice within
``gateway_reload_s``). ``/metrics`` needs no key when ``Settings.metrics_public`` is true (the
default, for a server bound to 127.0.0.1), else a viewer key.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from llmloop.api.deps import ActorDep, ContainerDep, get_actor
from llmloop.api.routes.common import NamePath
from llmloop.core.deployments import DeploymentPublic, DeploymentSpec
from llmloop.core.traces import TracePublic
from llmloop.errors import BadRequestError
from llmloop.services.gateway.service import GatewayService

router = APIRouter(tags=["deployments"])


async def _with_status(c: Any, dep: DeploymentPublic) -> DeploymentPublic:
    runtime = c.gateway.manager.runtimes.get(dep.name)
    if runtime is None:
        return dep
    resolved = {s.label: s.resolved.version_id or s.resolved.key for s in runtime.slots()}
    return dep.model_copy(update={"resolved": resolved})


@router.get("/api/deployments", response_model=list[DeploymentPublic])
async def list_deployments(c: ContainerDep, _: ActorDep) -> Any:
    deps = await asyncio.to_thread(c.deployments.list)
    return [await _with_status(c, d) for d in deps]


@router.get("/api/deployments/{name}", response_model=DeploymentPublic)
async def get_deployment(name: NamePath, c: ContainerDep, _: ActorDep) -> Any:
    return await _with_status(c, await asyncio.to_thread(c.deployments.get, name))


@router.post("/api/deployments", response_model=DeploymentPublic, status_code=201)
async def create_deployment(spec: DeploymentSpec, c: ContainerDep, actor: ActorDep) -> Any:
    # Checked and started before it is stored: a deployment that cannot serve is refused.
    return await _with_status(c, await c.gateway.manager.apply(spec, actor))


@router.put("/api/deployments/{name}", response_model=DeploymentPublic)
async def put_deployment(
    name: NamePath, spec: DeploymentSpec, c: ContainerDep, actor: ActorDep
) -> Any:
    if spec.name != name:
        raise BadRequestError(f"the body names '{spec.name}' but the path names '{name}'")
    return await _with_status(c, await c.gateway.manager.apply(spec, actor))


@router.delete("/api/deployments/{name}", status_code=204)
async def delete_deployment(name: NamePath, c: ContainerDep, actor: ActorDep) -> Response:
    await asyncio.to_thread(c.deployments.delete, name, actor)
    await c.gateway.manager.remove(name)
    return Response(status_code=204)


@router.post("/api/deployments/{name}/reload")
async def reload_deployment(name: NamePath, c: ContainerDep, actor: ActorDep) -> Any:
    """Re-resolve aliases now; a moved alias swaps engines without failing requests."""
    actor.require("editor")
    return {"name": name, "resolved": await c.gateway.manager.reload(name)}


@router.get("/api/traces", response_model=list[TracePublic])
async def list_traces(
    c: ContainerDep,
    _: ActorDep,
    deployment: str | None = None,
    parent_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Any:
    return await asyncio.to_thread(c.gateway.traces.list, deployment, parent_id, limit)


@router.get("/api/traces/{trace_id}", response_model=TracePublic)
async def get_trace(trace_id: str, c: ContainerDep, _: ActorDep) -> Any:
    return await asyncio.to_thread(c.gateway.traces.get, trace_id)


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request, c: ContainerDep) -> Response:
    if not c.settings.metrics_public:
        get_actor(request)
    gateway = c.gateway
    sample_load(gateway)
    body = await asyncio.to_thread(gateway.metrics.render)  # files to read in multiprocess mode
    return Response(body, media_type=CONTENT_TYPE_LATEST)


def sample_load(gateway: GatewayService) -> None:
    """Set the load gauges: requests in flight and queued per deployment, the trace queue."""
    admissions = [runtime.admission for runtime in gateway.manager.runtimes.values()]
    gateway.metrics.sample(admissions, gateway.writer.depth, gateway.writer.dropped)


async def sample_load_every(gateway: GatewayService, interval_s: float = 1.0) -> None:
    """Keep this worker's load gauges fresh (multiprocess mode: another worker may answer the
    scrape); runs until cancelled."""
    while True:
        sample_load(gateway)
        await asyncio.sleep(interval_s)
