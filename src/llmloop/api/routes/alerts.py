"""REST routes of alert rules: create, list, get, delete, events, evaluate now."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from llmloop.api.deps import ActorDep, ContainerDep
from llmloop.api.routes.common import Limit, NamePath
from llmloop.core.alerts import AlertEventPublic, AlertRuleCreate, AlertRulePublic

router = APIRouter(prefix="/api/alerts", tags=["alerts"])


@router.get("/rules", response_model=list[AlertRulePublic])
def list_rules(c: ContainerDep, _: ActorDep) -> Any:
    return c.alerts.list()


@router.post("/rules", response_model=AlertRulePublic, status_code=201)
def create_rule(spec: AlertRuleCreate, c: ContainerDep, actor: ActorDep) -> Any:
    return c.alerts.create(spec, actor)


@router.get("/rules/{name}", response_model=AlertRulePublic)
def get_rule(name: NamePath, c: ContainerDep, _: ActorDep) -> Any:
    return c.alerts.get(name)


@router.delete("/rules/{name}", status_code=204)
def delete_rule(name: NamePath, c: ContainerDep, actor: ActorDep) -> Response:
    c.alerts.delete(name, actor)
    return Response(status_code=204)


@router.get("/events", response_model=list[AlertEventPublic])
def events(
    c: ContainerDep,
    _: ActorDep,
    rule: Annotated[str | None, Query(max_length=128)] = None,
    limit: Limit = 100,
) -> Any:
    return c.alerts.events(rule, limit)


@router.post("/evaluate", response_model=list[AlertEventPublic])
async def evaluate(c: ContainerDep, actor: ActorDep) -> Any:
    actor.require("editor")
    return await c.alerts.evaluate()
