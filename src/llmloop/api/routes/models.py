"""REST routes of models: versions, aliases, stages, model cards and the deployments serving a
version now."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from llmloop.api.deps import ActorDep, ContainerDep
from llmloop.api.routes.common import Limit, NamePath, Offset, RefPath, parse_ref
from llmloop.core.deployments import ServingRoute
from llmloop.core.models import (
    AliasMove,
    ModelCreate,
    ModelPublic,
    ModelVersionCreate,
    ModelVersionPublic,
    StageMove,
)
from llmloop.services.model_cards import ModelCard, build_card, render_markdown

router = APIRouter(prefix="/api/models", tags=["models"])


@router.get("", response_model=list[ModelPublic])
def list_models(c: ContainerDep, _: ActorDep, limit: Limit = 100, offset: Offset = 0) -> Any:
    return c.models.list(limit, offset)


@router.post("", response_model=ModelPublic, status_code=201)
def create_model(spec: ModelCreate, c: ContainerDep, actor: ActorDep) -> Any:
    return c.models.create(spec, actor)


@router.get("/{name}", response_model=ModelPublic)
def get_model(name: NamePath, c: ContainerDep, _: ActorDep) -> Any:
    return c.models.get(name)


@router.get("/{name}/versions", response_model=list[ModelVersionPublic])
def list_versions(name: NamePath, c: ContainerDep, _: ActorDep) -> Any:
    return c.models.list_versions(name)


@router.post("/{name}/versions", response_model=ModelVersionPublic, status_code=201)
def create_version(
    name: NamePath, spec: ModelVersionCreate, c: ContainerDep, actor: ActorDep
) -> Any:
    return c.models.create_version(name, spec, actor)


@router.get("/{name}/versions/{ref}", response_model=ModelVersionPublic)
def get_version(name: NamePath, ref: RefPath, c: ContainerDep, _: ActorDep) -> Any:
    return c.models.get_version(name, parse_ref(ref))


@router.get("/{name}/versions/{ref}/card", response_model=ModelCard)
def get_card(
    name: NamePath,
    ref: RefPath,
    c: ContainerDep,
    _: ActorDep,
    format: Literal["json", "markdown"] = "json",
) -> Any:
    """The version's model card; ``?format=markdown`` gives it as ``text/markdown``."""
    card = build_card(c, name, parse_ref(ref))
    if format == "markdown":
        return PlainTextResponse(render_markdown(card), media_type="text/markdown; charset=utf-8")
    return card


@router.get("/{name}/versions/{ref}/deployments", response_model=list[ServingRoute])
def get_serving(name: NamePath, ref: RefPath, c: ContainerDep, _: ActorDep) -> Any:
    """The deployments whose targets resolve to this version now, with each target's role and
    the reference it goes through (computed from the aliases as they are, never stored)."""
    return c.deployments.served_by(c.models.get_version(name, parse_ref(ref)).id)


@router.put("/{name}/aliases", response_model=ModelPublic)
def move_alias(name: NamePath, body: AliasMove, c: ContainerDep, actor: ActorDep) -> Any:
    return c.models.set_alias(name, body.alias, body.version, actor)


@router.put("/{name}/versions/{ref}/stage", response_model=ModelVersionPublic)
def set_stage(
    name: NamePath, ref: RefPath, body: StageMove, c: ContainerDep, actor: ActorDep
) -> Any:
    version = c.models.get_version(name, parse_ref(ref))
    return c.models.set_stage(name, version.version, body.stage, actor)
