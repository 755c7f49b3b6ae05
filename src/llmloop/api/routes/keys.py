"""REST routes of API keys (admins only; the service checks the role)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from llmloop.api.deps import ActorDep, ContainerDep
from llmloop.api.routes.common import IdPath
from llmloop.core.governance import ApiKeyCreate, ApiKeyCreated, ApiKeyPublic
from llmloop.errors import PermissionDeniedError

router = APIRouter(prefix="/api/keys", tags=["keys"])


@router.get("", response_model=list[ApiKeyPublic])
def list_keys(c: ContainerDep, actor: ActorDep, include_revoked: bool = False) -> Any:
    if actor.role != "admin":
        raise PermissionDeniedError("listing keys needs the admin role")
    return c.keys.list(include_revoked)


@router.post("", response_model=ApiKeyCreated, status_code=201)
def create_key(spec: ApiKeyCreate, c: ContainerDep, actor: ActorDep) -> Any:
    return c.keys.create(spec, actor)


@router.post("/{key_id}/revoke", response_model=ApiKeyPublic)
def revoke_key(key_id: IdPath, c: ContainerDep, actor: ActorDep) -> Any:
    return c.keys.revoke(key_id, actor)
