"""REST routes of runs: create, metrics, params, artifacts, finish."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from llmloop.api.deps import ActorDep, ContainerDep
from llmloop.api.routes.common import IdPath, Limit, Offset
from llmloop.core.runs import MetricLog, RunCreate, RunFinish, RunKind, RunPublic, RunStatus

router = APIRouter(prefix="/api/runs", tags=["runs"])


@router.get("", response_model=list[RunPublic])
def list_runs(
    c: ContainerDep,
    _: ActorDep,
    kind: RunKind | None = None,
    status: RunStatus | None = None,
    parent_id: str | None = Query(None, pattern=r"^run_[0-9A-Z]{26}$"),
    limit: Limit = 100,
    offset: Offset = 0,
) -> Any:
    return c.runs.list(kind, status, parent_id, limit, offset)


@router.post("", response_model=RunPublic, status_code=201)
def create_run(spec: RunCreate, c: ContainerDep, actor: ActorDep) -> Any:
    return c.runs.create(spec, actor)


@router.get("/{run_id}", response_model=RunPublic)
def get_run(run_id: IdPath, c: ContainerDep, _: ActorDep) -> Any:
    return c.runs.get(run_id)


@router.post("/{run_id}/metrics", status_code=201)
def log_metrics(run_id: IdPath, body: MetricLog, c: ContainerDep, actor: ActorDep) -> Any:
    return {"logged": c.runs.log_metrics(run_id, body.points, actor)}


@router.get("/{run_id}/metrics")
def metric_series(
    run_id: IdPath,
    c: ContainerDep,
    _: ActorDep,
    key: str | None = Query(None, min_length=1, max_length=250),
) -> Any:
    return c.runs.metric_series(run_id, key)


@router.patch("/{run_id}/params", response_model=RunPublic)
def log_params(run_id: IdPath, params: dict[str, Any], c: ContainerDep, actor: ActorDep) -> Any:
    return c.runs.log_params(run_id, params, actor)


@router.post("/{run_id}/finish", response_model=RunPublic)
def finish(run_id: IdPath, body: RunFinish, c: ContainerDep, actor: ActorDep) -> Any:
    return c.runs.finish(run_id, body.status, actor)
