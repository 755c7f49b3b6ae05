"""The registry and its governance in the SDK: models, versions, aliases and stages, protected
pointers, approvals, the audit log, lineage and API keys, with the same verbs as ``llmloop
models|approvals|audit|lineage|keys`` and the REST routes under ``/api``. Each method checks its
arguments (``client/checks.py``), then calls the service in process or the route over HTTP.
"""

from __future__ import annotations

from typing import Any

from llmloop.client import checks
from llmloop.client.calls import Calls
from llmloop.client.transport import HttpCall
from llmloop.core.base import JsonDict
from llmloop.core.governance import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyPublic,
    ApprovalCreate,
    ApprovalDecision,
    ApprovalPublic,
    AuditEntry,
    LineageGraph,
)
from llmloop.core.models import (
    AliasMove,
    ModelCreate,
    ModelPublic,
    ModelVersionCreate,
    ModelVersionPublic,
    StageMove,
)
from llmloop.errors import InvalidInputError

APPROVAL_STATUSES = ("pending", "approved", "rejected")
PROTECTED_KINDS = ("prompt_label", "model_alias")


class GovernanceMethods(Calls):
    # --- models ------------------------------------------------------------------------------

    def create_model(self, name: str, description: str = "") -> ModelPublic:
        spec = checks.build(ModelCreate, name=name, description=description)
        return self._do(
            ModelPublic,
            lambda c, a: c.models.create(spec, a),
            HttpCall("POST", "/api/models", spec),
        )

    def list_models(self) -> list[ModelPublic]:
        return self._do(
            list[ModelPublic], lambda c, a: c.models.list(), HttpCall("GET", "/api/models")
        )

    def get_model(self, name: str) -> ModelPublic:
        checks.name(name, "model")
        return self._do(
            ModelPublic, lambda c, a: c.models.get(name), HttpCall("GET", f"/api/models/{name}")
        )

    def create_model_version(self, name: str, **fields: Any) -> ModelVersionPublic:
        """Fields of :class:`ModelVersionCreate`: base_model, format, artifact, run_id, ..."""
        checks.name(name, "model")
        spec = checks.build(ModelVersionCreate, **fields)
        return self._do(
            ModelVersionPublic,
            lambda c, a: c.models.create_version(name, spec, a),
            HttpCall("POST", f"/api/models/{name}/versions", spec),
        )

    def list_model_versions(self, name: str) -> list[ModelVersionPublic]:
        checks.name(name, "model")
        return self._do(
            list[ModelVersionPublic],
            lambda c, a: c.models.list_versions(name),
            HttpCall("GET", f"/api/models/{name}/versions"),
        )

    def get_model_version(self, name: str, ref: int | str = "latest") -> ModelVersionPublic:
        checks.name(name, "model")
        checks.ref(ref)
        return self._do(
            ModelVersionPublic,
            lambda c, a: c.models.get_version(name, ref),
            HttpCall("GET", f"/api/models/{name}/versions/{ref}"),
        )

    def set_model_alias(self, name: str, alias: str, version: int) -> ModelPublic:
        checks.name(name, "model")
        body = checks.build(AliasMove, alias=alias, version=version)
        return self._do(
            ModelPublic,
            lambda c, a: c.models.set_alias(name, alias, version, a),
            HttpCall("PUT", f"/api/models/{name}/aliases", body),
        )

    def set_model_stage(self, name: str, version: int, stage: str) -> ModelVersionPublic:
        checks.name(name, "model")
        checks.ref(version)
        body = checks.build(StageMove, stage=stage)
        return self._do(
            ModelVersionPublic,
            lambda c, a: c.models.set_stage(name, version, stage, a),
            HttpCall("PUT", f"/api/models/{name}/versions/{version}/stage", body),
        )

    # --- governance --------------------------------------------------------------------------

    def protect(self, kind: str, name: str, label: str, protected: bool = True) -> None:
        checks.choice(kind, PROTECTED_KINDS, "kind")
        body = {"kind": kind, "name": name, "label": label, "protected": protected}
        self._do(
            None,
            lambda c, a: c.governance.protect(kind, name, label, protected, a),
            HttpCall("PUT", "/api/protections", body),
        )

    def request_approval(
        self, kind: str, name: str, label: str, version: int, comment: str = ""
    ) -> ApprovalPublic:
        spec = checks.build(
            ApprovalCreate, kind=kind, name=name, label=label, version=version, comment=comment
        )
        return self._do(
            ApprovalPublic,
            lambda c, a: c.governance.request(spec, a),
            HttpCall("POST", "/api/approvals", spec),
        )

    def approve(self, approval_id: str, comment: str = "") -> ApprovalPublic:
        checks.entity_id(approval_id, "approval")
        body = checks.build(ApprovalDecision, comment=comment)
        return self._do(
            ApprovalPublic,
            lambda c, a: c.governance.decide(approval_id, True, a, comment),
            HttpCall("POST", f"/api/approvals/{approval_id}/approve", body),
        )

    def reject(self, approval_id: str, comment: str = "") -> ApprovalPublic:
        checks.entity_id(approval_id, "approval")
        body = checks.build(ApprovalDecision, comment=comment)
        return self._do(
            ApprovalPublic,
            lambda c, a: c.governance.decide(approval_id, False, a, comment),
            HttpCall("POST", f"/api/approvals/{approval_id}/reject", body),
        )

    def list_approvals(self, status: str | None = None) -> list[ApprovalPublic]:
        checks.choice(status, APPROVAL_STATUSES, "status")
        return self._do(
            list[ApprovalPublic],
            lambda c, a: c.governance.list_approvals(status),
            HttpCall("GET", "/api/approvals", params={"status": status} if status else None),
        )

    def audit(
        self, entity_id: str | None = None, limit: int = 100, after_id: int = 0
    ) -> list[AuditEntry]:
        checks.page(limit)
        checks.number(after_id, "after_id", 0, 2**62)
        if entity_id is not None and len(entity_id) > 200:
            raise InvalidInputError("entity_id: at most 200 characters")
        params: dict[str, Any] = {"limit": limit, "after_id": after_id}
        if entity_id:
            params["entity_id"] = entity_id
        return self._do(
            list[AuditEntry],
            lambda c, a: c.governance.audit(entity_id, limit, after_id),
            HttpCall("GET", "/api/audit", params=params),
        )

    def lineage(self, entity_id: str, direction: str = "both") -> LineageGraph:
        checks.entity_id(entity_id, "entity")
        checks.choice(direction, ("up", "down", "both"), "direction")
        return self._do(
            LineageGraph,
            lambda c, a: c.governance.lineage(entity_id, direction),
            HttpCall("GET", f"/api/lineage/{entity_id}", params={"direction": direction}),
        )

    # --- keys --------------------------------------------------------------------------------

    def create_key(
        self, name: str, role: str = "viewer", limits: JsonDict | None = None
    ) -> ApiKeyCreated:
        spec = checks.build(ApiKeyCreate, name=name, role=role, limits=limits or {})
        return self._do(
            ApiKeyCreated, lambda c, a: c.keys.create(spec, a), HttpCall("POST", "/api/keys", spec)
        )

    def list_keys(self) -> list[ApiKeyPublic]:
        return self._do(
            list[ApiKeyPublic], lambda c, a: c.keys.list(), HttpCall("GET", "/api/keys")
        )

    def revoke_key(self, key_id: str) -> ApiKeyPublic:
        checks.entity_id(key_id, "API key")
        return self._do(
            ApiKeyPublic,
            lambda c, a: c.keys.revoke(key_id, a),
            HttpCall("POST", f"/api/keys/{key_id}/revoke"),
        )
