"""REST routes of governance: protections, approvals, the audit log and lineage."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query

from llmloop.api.deps import ActorDep, ContainerDep
from llmloop.api.routes.common import IdPath, Limit
from llmloop.core.base import Value
from llmloop.core.governance import (
    ApprovalCreate,
    ApprovalDecision,
    ApprovalPublic,
    AuditEntry,
    LineageGraph,
    ProtectedKind,
)

router = APIRouter(prefix="/api", tags=["governance"])


class ProtectionSet(Value):
    kind: ProtectedKind
    name: str
    label: str
    protected: bool = True


@router.put("/protections", status_code=204)
def protect(body: ProtectionSet, c: ContainerDep, actor: ActorDep) -> None:
    c.governance.protect(body.kind, body.name, body.label, body.protected, actor)


@router.post("/approvals", response_model=ApprovalPublic, status_code=201)
def request_approval(body: ApprovalCreate, c: ContainerDep, actor: ActorDep) -> Any:
    return c.governance.request(body, actor)


@router.get("/approvals", response_model=list[ApprovalPublic])
def list_approvals(
    c: ContainerDep,
    _: ActorDep,
    status: Literal["pending", "approved", "rejected"] | None = None,
    limit: Limit = 100,
) -> Any:
    return c.governance.list_approvals(status, limit)


@router.get("/approvals/{approval_id}", response_model=ApprovalPublic)
def get_approval(approval_id: IdPath, c: ContainerDep, _: ActorDep) -> Any:
    return c.governance.get_approval(approval_id)


@router.post("/approvals/{approval_id}/approve", response_model=ApprovalPublic)
def approve(approval_id: IdPath, body: ApprovalDecision, c: ContainerDep, actor: ActorDep) -> Any:
    return c.governance.decide(approval_id, True, actor, body.comment)


@router.post("/approvals/{approval_id}/reject", response_model=ApprovalPublic)
def reject(approval_id: IdPath, body: ApprovalDecision, c: ContainerDep, actor: ActorDep) -> Any:
    return c.governance.decide(approval_id, False, actor, body.comment)


@router.get("/audit", response_model=list[AuditEntry])
def audit(
    c: ContainerDep,
    _: ActorDep,
    entity_id: str | None = Query(None, max_length=200),
    limit: Limit = 100,
    after_id: int = Query(0, ge=0, le=2**62),
    actor: str | None = Query(None, max_length=128),
) -> Any:
    return c.governance.audit(entity_id, limit, after_id, actor)


@router.get("/lineage/{entity_id}", response_model=LineageGraph)
def lineage(
    entity_id: IdPath,
    c: ContainerDep,
    _: ActorDep,
    direction: Literal["up", "down", "both"] = "both",
    depth: int = Query(20, ge=1, le=100),
) -> Any:
    return c.governance.lineage(entity_id, direction, depth)
