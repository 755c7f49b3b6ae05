"""REST routes of monitoring (summary, time series) and drift (run, results); and the background
checks (scheduled drift, alert evaluation) the server starts from Settings."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from llmloop.api.deps import ActorDep, ContainerDep
from llmloop.api.routes.common import TIME_HELP, parse_time
from llmloop.core.monitoring import (
    Dimension,
    DriftReport,
    DriftResultPublic,
    DriftRunCreate,
    MetricsRow,
    parse_duration,
)
from llmloop.services.actors import Actor
from llmloop.services.alerts import AlertLoop
from llmloop.services.container import Container
from llmloop.services.drift import DriftScheduler
from llmloop.services.periodic import PeriodicTask
from llmloop.services.triggers import TriggerLoop

router = APIRouter(tags=["monitoring"])
Since = Annotated[str, Query(max_length=64, description="Window start. " + TIME_HELP)]
Until = Annotated[str | None, Query(max_length=64, description="Window end (default now).")]
GroupBy = Annotated[
    list[Dimension | Literal[""]] | None,
    Query(description="Dimensions (repeatable; default deployment); one empty value: no groups."),
]
Deployment = Annotated[str | None, Query(max_length=128)]


def _range(since: str, until: str | None) -> tuple[datetime, datetime | None]:
    return parse_time(since), (parse_time(until) if until else None)


def _dims(group_by: list[Dimension | Literal[""]] | None) -> list[Dimension] | None:
    """The dimensions asked for, once each; ``group_by=`` (empty) asks for none, which a list
    cannot say in a query string otherwise."""
    if group_by is None:
        return None
    return list(dict.fromkeys(d for d in group_by if d))


@router.get("/api/monitoring/summary", response_model=list[MetricsRow])
def summary(
    c: ContainerDep,
    _: ActorDep,
    since: Since = "1h",
    until: Until = None,
    group_by: GroupBy = None,
    deployment: Deployment = None,
) -> Any:
    start, end = _range(since, until)
    return c.monitoring.summary(start, end, _dims(group_by), deployment)


@router.get("/api/monitoring/timeseries", response_model=list[MetricsRow])
def timeseries(
    c: ContainerDep,
    _: ActorDep,
    since: Since = "1h",
    until: Until = None,
    bucket: Annotated[str, Query(max_length=16, description="Bucket size, e.g. 5m.")] = "5m",
    group_by: GroupBy = None,
    deployment: Deployment = None,
) -> Any:
    start, end = _range(since, until)
    return c.monitoring.timeseries(start, parse_duration(bucket), end, _dims(group_by), deployment)


@router.post("/api/drift/run", response_model=DriftReport, status_code=201)
def run_drift(spec: DriftRunCreate, c: ContainerDep, actor: ActorDep) -> Any:
    return c.drift.run(spec, actor)


@router.get("/api/drift/results", response_model=list[DriftResultPublic])
def drift_results(
    c: ContainerDep,
    _: ActorDep,
    deployment: Deployment = None,
    metric: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[str | None, Query(max_length=64, description=TIME_HELP)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 500,
) -> Any:
    return c.drift.history(deployment, metric, parse_time(since) if since else None, limit)


class BackgroundChecks:
    """Scheduled drift, alert evaluation and pipeline triggers, each on when its setting is."""

    def __init__(self, container: Container) -> None:
        s = container.settings
        actor = Actor(name="llmloop-scheduler", role="editor")
        self.drift = (
            DriftScheduler(container.drift, actor, s.drift_interval_s, s.drift_window_s)
            if s.drift_interval_s > 0
            else None
        )
        self.alerts = (
            AlertLoop(container.alerts, s.alert_interval_s) if s.alert_interval_s > 0 else None
        )
        self.triggers = (
            TriggerLoop(
                container.triggers,
                Path(s.pipelines_dir),
                Actor("pipeline-triggers", "editor"),
                s.pipeline_tick_s,
            )
            if s.pipelines_dir
            else None
        )

    def _tasks(self) -> list[PeriodicTask]:
        return [t for t in (self.drift, self.alerts, self.triggers) if t is not None]

    def start(self) -> None:
        for task in self._tasks():
            task.start()

    async def aclose(self) -> None:
        await asyncio.gather(*(t.aclose() for t in self._tasks()))
