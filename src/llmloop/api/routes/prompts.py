"""REST routes of prompts: versions, labels, render and diff."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from llmloop.api.deps import ActorDep, ContainerDep
from llmloop.api.routes.common import Limit, NamePath, Offset, RefPath, parse_ref
from llmloop.core.prompts import (
    LabelMove,
    PromptCreate,
    PromptPublic,
    PromptRender,
    PromptRendered,
    PromptVersionCreate,
    PromptVersionPublic,
)

router = APIRouter(prefix="/api/prompts", tags=["prompts"])
REF_PATTERN = r"^([1-9][0-9]{0,8}|[a-z][a-z0-9_-]{0,63})$"


@router.get("", response_model=list[PromptPublic])
def list_prompts(c: ContainerDep, _: ActorDep, limit: Limit = 100, offset: Offset = 0) -> Any:
    return c.prompts.list(limit, offset)


@router.post("", response_model=PromptPublic, status_code=201)
def create_prompt(spec: PromptCreate, c: ContainerDep, actor: ActorDep) -> Any:
    return c.prompts.create(spec, actor)


@router.get("/{name}", response_model=PromptPublic)
def get_prompt(name: NamePath, c: ContainerDep, _: ActorDep) -> Any:
    return c.prompts.get(name)


@router.get("/{name}/versions", response_model=list[PromptVersionPublic])
def list_versions(name: NamePath, c: ContainerDep, _: ActorDep) -> Any:
    return c.prompts.list_versions(name)


@router.post("/{name}/versions", response_model=PromptVersionPublic, status_code=201)
def create_version(
    name: NamePath, spec: PromptVersionCreate, c: ContainerDep, actor: ActorDep
) -> Any:
    return c.prompts.create_version(name, spec, actor)


@router.get("/{name}/versions/{ref}", response_model=PromptVersionPublic)
def get_version(name: NamePath, ref: RefPath, c: ContainerDep, _: ActorDep) -> Any:
    return c.prompts.get_version(name, parse_ref(ref))


@router.post("/{name}/render", response_model=PromptRendered)
def render(
    name: NamePath,
    body: PromptRender,
    c: ContainerDep,
    _: ActorDep,
    ref: str = Query("production", pattern=REF_PATTERN),
) -> Any:
    return c.prompts.render(name, body.variables, parse_ref(ref))


@router.get("/{name}/diff")
def diff(
    name: NamePath,
    c: ContainerDep,
    _: ActorDep,
    a: str = Query(pattern=REF_PATTERN),
    b: str = Query(pattern=REF_PATTERN),
) -> Any:
    return c.prompts.diff(name, parse_ref(a), parse_ref(b))


@router.put("/{name}/labels", response_model=PromptPublic)
def move_label(name: NamePath, body: LabelMove, c: ContainerDep, actor: ActorDep) -> Any:
    return c.prompts.set_label(name, body.label, body.version, actor)
