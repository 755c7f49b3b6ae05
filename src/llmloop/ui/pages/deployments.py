"""Dashboard pages of deployments: the list, one deployment's routes and live state, and the
editor actions that re-resolve (reload) or delete a deployment.

Each route shows the registry reference it names, the model version that reference resolves to
now, and what the gateway of this process serves for it (they differ until the next reload).
Writing or editing a spec is the API's and the CLI's job (a JSON body or a YAML file), not this
page's.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse, Response

from llmloop.core.deployments import DeploymentPublic, TargetSpec
from llmloop.core.models import ModelVersionPublic
from llmloop.errors import LlmloopError
from llmloop.services.container import Container
from llmloop.services.serving import places
from llmloop.ui.pages.traces import version_names
from llmloop.ui.web import (
    ActorPage,
    Base,
    ContainerPage,
    FormGuard,
    page_router,
    redirect,
    render,
)

router = page_router()
RECENT_TRACES = 10


@dataclass(frozen=True)
class Route:
    """One target of a deployment as the pages show it."""

    role: str  # primary | fallback | shadow
    target: TargetSpec
    share: float | None  # of the canary split, 0..1 (primaries only)
    version: ModelVersionPublic | None  # what the registry reference resolves to now
    problem: str  # why it does not resolve ("" when it does)
    serving: str | None  # the version id (or engine key) this process serves; None: not loaded

    @property
    def stale(self) -> bool:
        """The registry moved since the gateway last resolved this target (reload to follow)."""
        return (
            self.version is not None
            and self.serving is not None
            and self.serving != self.version.id
        )


def _resolve(c: Container, target: TargetSpec) -> tuple[ModelVersionPublic | None, str]:
    if target.model is None:
        return None, ""
    ref: int | str = target.version if target.version is not None else target.alias or "latest"
    try:
        return c.models.get_version(target.model, ref), ""
    except LlmloopError as exc:
        return None, exc.detail


def _serving(c: Container, dep: DeploymentPublic) -> list[str | None]:
    """What the live runtime serves per target (in spec order), if it runs this very spec."""
    spec = dep.spec
    count = len(spec.targets) + len(spec.fallbacks) + (1 if spec.shadow else 0)
    runtime = c.gateway.manager.runtimes.get(dep.name)
    if runtime is None or runtime.spec != spec:
        return [None] * count
    return [s.resolved.version_id or s.resolved.key for s in runtime.slots()]


def routes_of(c: Container, dep: DeploymentPublic) -> list[Route]:
    """Primaries, fallbacks and the shadow of ``dep``, each resolved now."""
    routes = []
    for (role, _, target, share), serving in zip(places(dep.spec), _serving(c, dep), strict=True):
        version, problem = _resolve(c, target)
        routes.append(Route(role, target, share, version, problem, serving))
    return routes


@router.get("/deployments")
def deployment_list(request: Request, c: ContainerPage, actor: ActorPage) -> HTMLResponse:
    deployments = c.deployments.list()
    rows = [(d, routes_of(c, d), d.updated_at) for d in deployments]
    return render(request, "deployments/list.html", section="deployments", rows=rows)


@router.get("/deployments/{name}")
def deployment_detail(
    request: Request, name: str, c: ContainerPage, actor: ActorPage
) -> HTMLResponse:
    dep = c.deployments.get(name)
    now = datetime.now(UTC)
    since = now - timedelta(hours=1)
    totals = c.monitoring.summary(since, now, deployment=dep.name)
    by_version = c.monitoring.summary(since, now, ["model_version"], deployment=dep.name)
    traces = c.gateway.traces.list(dep.name, limit=RECENT_TRACES, kind="primary")
    ids = [r.model_version for r in by_version] + [t.model_version_id for t in traces]
    return render(
        request,
        "deployments/detail.html",
        section="deployments",
        dep=dep,
        routes=routes_of(c, dep),
        updated=dep.updated_at,
        loaded=dep.name in c.gateway.manager.runtimes,
        hour=totals[0] if totals else None,
        by_version=by_version,
        traces=traces,
        versions=version_names(c, ids),
        spec_json=dep.spec.model_dump(mode="json", exclude_defaults=True),
        can_edit=actor.role in ("editor", "admin"),
    )


def _page(base: str, name: str) -> str:
    return f"{base}/deployments/{quote(name, safe='')}"


@router.post("/deployments/{name}/reload", dependencies=[FormGuard])
async def reload_deployment(
    name: str, request: Request, c: ContainerPage, actor: ActorPage, base: Base
) -> Response:
    """What ``POST /api/deployments/{name}/reload`` does: re-resolve aliases now."""
    actor.require("editor")
    await asyncio.to_thread(c.deployments.get, name)  # an unknown name is a 404 page
    back = _page(base, name)
    try:
        resolved = await c.gateway.manager.reload(name)
    except LlmloopError as exc:
        return redirect(request, back, f"Reload failed: {exc.detail}", error=True)
    serving = ", ".join(f"{label} → {key}" for label, key in resolved.items())
    return redirect(request, back, f"Reloaded '{name}': {serving}.")


@router.post("/deployments/{name}/delete", dependencies=[FormGuard])
async def delete_deployment(
    name: str, request: Request, c: ContainerPage, actor: ActorPage, base: Base
) -> Response:
    """What ``DELETE /api/deployments/{name}`` does: forget the spec, stop serving it."""
    actor.require("editor")
    dep = await asyncio.to_thread(c.deployments.get, name)
    try:
        await asyncio.to_thread(c.deployments.delete, name, actor)
    except LlmloopError as exc:
        return redirect(request, _page(base, name), exc.detail, error=True)
    await c.gateway.manager.remove(name)
    message = f"Deleted deployment '{name}'."
    if dep.source == "file":
        message += " It comes back when the server next loads its deployments file."
    return redirect(request, f"{base}/deployments", message)
