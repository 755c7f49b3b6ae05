"""Governance values: approvals for protected moves, the append-only audit log, lineage graphs."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from llmloop.core.base import JsonDict, Timestamped, Value

ApprovalStatus = Literal["pending", "approved", "rejected", "applied"]
ProtectedKind = Literal["prompt_label", "model_alias"]


class ApprovalCreate(Value):
    """Ask to move a protected label or alias to a version."""

    kind: ProtectedKind
    name: str = Field(description="Prompt or model name.")
    label: str = Field(description="The protected label or alias.")
    version: int = Field(ge=1, le=2_147_483_647, description="Target version number.")
    comment: str = Field(default="", max_length=10_000)


class ApprovalDecision(Value):
    comment: str = Field(default="", max_length=10_000)


class ApprovalPublic(Timestamped):
    id: str
    kind: str
    name: str
    label: str
    version: int
    status: str
    requested_by: str
    comment: str
    decided_by: str | None = None
    decision_comment: str | None = None
    decided_at: datetime | None = None


class ProtectRequest(Value):
    label: str
    protected: bool = True


class AuditEntry(Value):
    id: int
    at: datetime
    actor: str
    action: str
    entity_type: str
    entity_id: str
    before: JsonDict | None
    after: JsonDict | None


class LineageNode(Value):
    id: str
    type: str
    label: str


class LineageEdge(Value):
    source: str = Field(description="Upstream node id.")
    target: str = Field(description="Downstream node id.")
    relation: str


class LineageGraph(Value):
    root: str
    nodes: list[LineageNode]
    edges: list[LineageEdge]


class ApiKeyCreate(Value):
    name: str = Field(min_length=1, max_length=128)
    role: Literal["admin", "editor", "viewer"] = "viewer"
    limits: JsonDict = Field(
        default_factory=dict,
        description="Gateway policy: rpm, tpm, max_concurrent, budget_usd.",
    )


class ApiKeyPublic(Timestamped):
    id: str
    name: str
    role: str
    prefix: str = Field(description="First characters of the secret, to recognise it.")
    limits: JsonDict
    revoked_at: datetime | None = None


class ApiKeyCreated(ApiKeyPublic):
    secret: str = Field(description="Shown once; store it now.")
