"""Which deployments serve a model version now, and through which reference.

Computed when read from the stored deployment specs and the model aliases as they are now, never
stored as edges: moving an alias (or registering a version that ``latest`` then names) changes
the answer at once. A target resolves as the gateway resolves it (``models.resolve_version_row``);
one whose alias, version or model names nothing now serves nothing and is left out, and inline
engine targets (no registry model) are skipped. What the gateway of a running server has loaded
may lag by up to its reload interval; the deployments page shows that difference, this does not.
It reads; it changes nothing.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator

from llmloop.core.deployments import DeploymentSpec, ServingRole, ServingRoute, TargetSpec
from llmloop.errors import NotFoundError
from llmloop.services.models import resolve_version_row
from llmloop.store import tables as t
from llmloop.store.registry import Row, Tx

Place = tuple[ServingRole, int, TargetSpec, float | None]


def places(spec: DeploymentSpec) -> Iterator[Place]:
    """Every target of ``spec`` with its role, its index in that role and, for primaries, its
    share of the canary split."""
    total = sum(target.weight for target in spec.targets)
    for i, target in enumerate(spec.targets):
        yield "primary", i, target, target.weight / total if total > 0 else None
    for i, target in enumerate(spec.fallbacks):
        yield "fallback", i, target, None
    if spec.shadow is not None:
        yield "shadow", 0, spec.shadow, None


class _Resolver:
    """Targets' references resolved to version rows within one read, each (model, ref) once."""

    def __init__(self, tx: Tx) -> None:
        self.tx = tx
        self.models: dict[str, Row | None] = {}
        self.versions: dict[tuple[str, str], Row | None] = {}

    def version(self, model: str, ref: str) -> Row | None:
        key = (model, ref)
        if key not in self.versions:
            if model not in self.models:
                self.models[model] = self.tx.get(t.models, name=model)
            owner = self.models[model]
            try:
                self.versions[key] = resolve_version_row(self.tx, owner, ref) if owner else None
            except NotFoundError:  # an alias that names nothing now: it serves nothing
                self.versions[key] = None
        return self.versions[key]


def serving_routes(tx: Tx, models: Collection[str] | None = None) -> list[ServingRoute]:
    """Every registry target of the stored deployments that resolves to a version now (of the
    models named in ``models``, or of any), in deployment name and spec order."""
    resolver = _Resolver(tx)
    routes = []
    for row in tx.select(t.deployments, order_by="name"):
        spec = DeploymentSpec.model_validate(row["spec"])
        for place in places(spec):
            target = place[2]
            if target.model is None or (models is not None and target.model not in models):
                continue  # an inline engine, or another model's target
            version = resolver.version(target.model, target.ref)
            if version is None:
                continue
            routes.append(_route(row, place, version))
    return routes


def _route(deployment: Row, place: Place, version: Row) -> ServingRoute:
    role, position, target, share = place
    assert target.model is not None
    return ServingRoute(
        deployment=deployment["name"],
        deployment_id=deployment["id"],
        role=role,
        position=position,
        target=target.label,
        ref=target.ref,
        pinned=target.ref.isascii() and target.ref.isdigit(),
        weight=target.weight if role == "primary" else None,
        share=share,
        model=target.model,
        version=version["version"],
        version_id=version["id"],
    )


def served_by(tx: Tx, version_id: str) -> list[ServingRoute]:
    """The deployment targets that resolve to the model version ``version_id`` now."""
    row = tx.get(t.model_versions, id=version_id)
    if row is None:
        raise NotFoundError(f"no model version with id '{version_id}'")
    model = tx.get(t.models, id=row["model_id"])
    if model is None:
        return []
    routes = serving_routes(tx, models={model["name"]})
    return [r for r in routes if r.version_id == version_id]
