"""Governance: protection of labels and aliases, approvals of protected moves, the audit log,
and lineage graphs over every registered entity.

An approval is requested by one person and decided by another admin (four eyes, unless the
setting allows self-approval); approving applies the move in the same transaction.
"""

from __future__ import annotations

from llmloop.core.deployments import ServingRoute
from llmloop.core.governance import (
    ApprovalCreate,
    ApprovalPublic,
    AuditEntry,
    LineageEdge,
    LineageGraph,
    LineageNode,
)
from llmloop.core.ids import entity_of, new_id
from llmloop.errors import ConflictError, InvalidInputError, NotFoundError, PermissionDeniedError
from llmloop.services.actors import Actor
from llmloop.services.pointers import MODEL_ALIAS, PROMPT_LABEL, move_pointer, set_protected
from llmloop.services.serving import serving_routes
from llmloop.store import tables as t
from llmloop.store.registry import Row, Store, Tx, utcnow

_OWNERS = {
    PROMPT_LABEL: (t.prompts, t.prompt_versions, "prompt_id"),
    MODEL_ALIAS: (t.models, t.model_versions, "model_id"),
}
_NODE_TABLES = {
    "dataset": t.datasets,
    "dataset_version": t.dataset_versions,
    "prompt": t.prompts,
    "prompt_version": t.prompt_versions,
    "run": t.runs,
    "model": t.models,
    "model_version": t.model_versions,
}
MAX_LINEAGE_NODES = 5000


class _ServingEdges:
    """Computed lineage edges version -> deployment, from what each deployment serves now;
    resolved once per graph, and only when a version or a deployment is reached."""

    def __init__(self, tx: Tx) -> None:
        self.tx = tx
        self.routes: list[ServingRoute] | None = None

    def touching(self, node_ids: set[str], upstream: bool) -> list[Row]:
        kind = "deployment" if upstream else "model_version"
        ids = {n for n in node_ids if entity_of(n) == kind}
        if not ids:
            return []
        if self.routes is None:
            self.routes = serving_routes(self.tx)
        return [
            {"source_id": r.version_id, "target_id": r.deployment_id, "relation": r.relation}
            for r in self.routes
            if (r.deployment_id if upstream else r.version_id) in ids
        ]


class GovernanceService:
    def __init__(self, store: Store, allow_self_approval: bool = False) -> None:
        self.store = store
        self.allow_self_approval = allow_self_approval

    def _owner(self, tx: Tx, kind: str, name: str) -> Row:
        table = _OWNERS[kind][0]
        row = tx.get(table, name=name)
        if row is None:
            noun = "prompt" if kind == PROMPT_LABEL else "model"
            raise NotFoundError(f"no {noun} named '{name}'")
        return row

    def protect(self, kind: str, name: str, label: str, protected: bool, actor: Actor) -> None:
        if kind not in _OWNERS:
            raise InvalidInputError(f"kind must be one of {sorted(_OWNERS)}")
        with self.store.transaction() as tx:
            owner = self._owner(tx, kind, name)
            set_protected(tx, kind, owner["id"], label, protected, actor)

    def request(self, spec: ApprovalCreate, actor: Actor) -> ApprovalPublic:
        actor.require("editor")
        with self.store.transaction() as tx:
            owner = self._owner(tx, spec.kind, spec.name)
            _, versions, fk = _OWNERS[spec.kind]
            target = tx.get(versions, **{fk: owner["id"], "version": spec.version})
            if target is None:
                raise NotFoundError(f"'{spec.name}' has no version {spec.version}")
            pointer = tx.get(t.pointers, kind=spec.kind, owner_id=owner["id"], name=spec.label)
            if pointer is None or not pointer["protected"]:
                raise ConflictError(f"'{spec.label}' is not protected: move it directly")
            if pointer["target_id"] == target["id"]:
                raise ConflictError(f"'{spec.label}' already points at version {spec.version}")
            same = {"kind": spec.kind, "name": spec.name, "label": spec.label,
                    "version": spec.version, "status": "pending"}  # fmt: skip
            waiting = tx.select(t.approvals, same)
            if waiting:  # asked twice (a double click, a retry): one request, not two
                return ApprovalPublic(**waiting[0])
            row: Row = {
                "id": new_id("approval"),
                "kind": spec.kind,
                "name": spec.name,
                "label": spec.label,
                "version": spec.version,
                "status": "pending",
                "requested_by": actor.name,
                "comment": spec.comment,
                "decided_by": None,
                "decision_comment": None,
                "decided_at": None,
                "created_at": utcnow(),
            }
            tx.insert(t.approvals, row)
            tx.audit(actor.name, "approval.request", "approval", row["id"], None, row)
            return ApprovalPublic(**row)

    def decide(
        self, approval_id: str, approve: bool, actor: Actor, comment: str = ""
    ) -> ApprovalPublic:
        actor.require("admin")
        with self.store.transaction() as tx:
            row = tx.get(t.approvals, for_update=True, id=approval_id)
            if row is None:
                raise NotFoundError(f"no approval with id '{approval_id}'")
            if row["status"] != "pending":
                raise ConflictError(f"approval '{approval_id}' is already {row['status']}")
            if row["requested_by"] == actor.name and not self.allow_self_approval:
                raise PermissionDeniedError("an approval must be decided by someone else")
            status = "approved" if approve else "rejected"
            now = utcnow()
            if approve:
                owner = self._owner(tx, row["kind"], row["name"])
                _, versions, fk = _OWNERS[row["kind"]]
                target = tx.get(versions, **{fk: owner["id"], "version": row["version"]})
                if target is None:
                    raise NotFoundError(f"'{row['name']}' has no version {row['version']}")
                move_pointer(
                    tx, row["kind"], owner["id"], row["label"], target["id"], actor, approved=True
                )
            changes = {
                "status": status,
                "decided_by": actor.name,
                "decision_comment": comment,
                "decided_at": now,
            }
            tx.update(t.approvals, {"id": approval_id}, changes)
            tx.audit(
                actor.name,
                f"approval.{status}",
                "approval",
                approval_id,
                {"status": "pending"},
                changes,
            )
            return ApprovalPublic(**{**row, **changes})

    def list_approvals(self, status: str | None = None, limit: int = 100) -> list[ApprovalPublic]:
        with self.store.read() as tx:
            where = {"status": status} if status else {}
            rows = tx.select(
                t.approvals, where, order_by="created_at", descending=True, limit=limit
            )
            return [ApprovalPublic(**r) for r in rows]

    def get_approval(self, approval_id: str) -> ApprovalPublic:
        with self.store.read() as tx:
            row = tx.get(t.approvals, id=approval_id)
            if row is None:
                raise NotFoundError(f"no approval with id '{approval_id}'")
            return ApprovalPublic(**row)

    def audit(
        self,
        entity_id: str | None = None,
        limit: int = 100,
        after_id: int = 0,
        actor_name: str | None = None,
        before_id: int | None = None,
    ) -> list[AuditEntry]:
        """Audit entries oldest first, paged by ``after_id``; or, with ``before_id``, newest
        first below that id (0: from the newest)."""
        if limit < 1 or limit > 10_000:
            raise InvalidInputError("limit must be between 1 and 10000")
        with self.store.read() as tx:
            rows = tx.audit_page(entity_id, limit, after_id, actor_name, before_id)
            return [AuditEntry(**r) for r in rows]

    def lineage(self, entity_id: str, direction: str = "both", depth: int = 20) -> LineageGraph:
        """Upstream and/or downstream graph of an entity, as nodes and edges. Besides the stored
        edges, a model version leads to the deployments that serve it now (computed, see
        ``services/serving``), and a deployment back to the versions it serves."""
        if direction not in ("up", "down", "both"):
            raise InvalidInputError("direction must be up, down or both")
        with self.store.read() as tx:
            self._node(tx, entity_id, must_exist=True)
            edges: dict[tuple[str, str, str], LineageEdge] = {}
            nodes = {entity_id}
            serving = _ServingEdges(tx)
            for upstream in (True, False):
                if direction == ("down" if upstream else "up"):
                    continue
                frontier = {entity_id}
                for _ in range(depth):
                    found = tx.edges_touching(sorted(frontier), upstream=upstream)
                    found += serving.touching(frontier, upstream)
                    nxt = set()
                    for e in found:
                        key = (e["source_id"], e["target_id"], e["relation"])
                        if key not in edges:
                            edges[key] = LineageEdge(source=key[0], target=key[1], relation=key[2])
                            nxt.add(key[0] if upstream else key[1])
                    frontier = nxt - nodes
                    nodes |= nxt
                    if not frontier or len(nodes) > MAX_LINEAGE_NODES:
                        break
            if not edges and not self._known_elsewhere(tx, entity_id):
                raise NotFoundError(f"no {entity_of(entity_id)} with id '{entity_id}'")
            return LineageGraph(
                root=entity_id,
                nodes=[self._node(tx, n) for n in sorted(nodes)],
                edges=sorted(edges.values(), key=lambda e: (e.source, e.target, e.relation)),
            )

    def _known_elsewhere(self, tx: Tx, node_id: str) -> bool:
        """Whether an id outside the registry's tables (a trace, a deployment) exists: with no
        lineage edges, an unknown one is a 404 rather than a graph of one node. (A trace that
        edges name is kept even when its row is gone: sampled out, or not written yet.)"""
        table = {"trace": t.traces, "deployment": t.deployments}.get(entity_of(node_id) or "")
        return table is None or tx.get(table, id=node_id) is not None

    def _node(self, tx: Tx, node_id: str, must_exist: bool = False) -> LineageNode:
        entity = entity_of(node_id) or "external"
        table = _NODE_TABLES.get(entity)
        row = tx.get(table, id=node_id) if table is not None else None
        if entity == "deployment":  # no registry table (a deleted one may stay in edges)
            row = tx.get(t.deployments, id=node_id)
        if must_exist and table is not None and row is None:
            raise NotFoundError(f"no {entity.replace('_', ' ')} with id '{node_id}'")
        if must_exist and table is None and entity not in ("trace", "deployment"):
            raise NotFoundError(f"'{node_id}' is not a registered entity id")
        return LineageNode(id=node_id, type=entity, label=self._label(tx, entity, row, node_id))

    def _label(self, tx: Tx, entity: str, row: Row | None, node_id: str) -> str:
        if row is None:
            return node_id
        parents = {
            "dataset_version": (t.datasets, "dataset_id"),
            "prompt_version": (t.prompts, "prompt_id"),
            "model_version": (t.models, "model_id"),
        }
        if entity in parents:
            table, fk = parents[entity]
            owner = tx.get(table, id=row[fk])
            return f"{owner['name'] if owner else '?'}:v{row['version']}"
        return str(row.get("name") or node_id)
