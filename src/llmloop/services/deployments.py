"""Deployments: declared in a YAML file, through the API or the CLI; stored in ``deployments``.

This service validates, stores, lists and deletes deployment specs and audits every change. It
does not route requests or start engines (``services/gateway`` does); it tells listeners that a
deployment changed so the gateway can reload it. Which deployments serve a model version now is
computed on read (``services/serving``).
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from llmloop.core.deployments import DeploymentPublic, DeploymentSpec, ServingRoute
from llmloop.core.ids import new_id
from llmloop.errors import ConfigError, NotFoundError
from llmloop.services.actors import Actor
from llmloop.services.serving import served_by, serving_routes
from llmloop.store import tables as t
from llmloop.store.registry import Row, Store, utcnow

Listener = Callable[[str], None]


def parse_deployments(data: Any, origin: str = "input") -> list[DeploymentSpec]:
    """Deployment specs from parsed YAML/JSON: a list, or ``{"deployments": [...]}``."""
    if isinstance(data, dict) and "deployments" in data:
        data = data["deployments"]
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise ConfigError(f"{origin}: expected a list of deployments")
    specs: list[DeploymentSpec] = []
    for i, item in enumerate(data):
        try:
            specs.append(DeploymentSpec.model_validate(item))
        except ValidationError as exc:
            raise ConfigError(f"{origin}: deployment #{i + 1}{_problem(exc)}") from None
    names = [s.name for s in specs]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"{origin}: name: deployment names repeat: {', '.join(repeated)}")
    return specs


def _problem(exc: ValidationError) -> str:
    """``: field: message`` of a spec's first problem (pydantic's "Value error, " dropped)."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ()))
    message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    return f": {where}: {message}" if where else f": {message}"


def read_deployments_file(path: str | Path) -> list[DeploymentSpec]:
    """Parse a YAML deployments file; ConfigError with the file name for anything wrong."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read deployments file {path}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    return parse_deployments(data or [], str(path))


class DeploymentService:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(name)`` after a deployment is created, changed or deleted here."""
        self._listeners.append(listener)

    def _notify(self, name: str) -> None:
        for listener in list(self._listeners):
            listener(name)

    def list(self) -> list[DeploymentPublic]:
        with self.store.read() as tx:
            rows = tx.select(t.deployments, order_by="name")
        return [_public(r) for r in rows]

    def get(self, name: str) -> DeploymentPublic:
        with self.store.read() as tx:
            row = tx.get(t.deployments, name=name)
        if row is None:
            raise NotFoundError(f"no deployment named '{name}'")
        return _public(row)

    def find(self, name: str) -> DeploymentPublic | None:
        try:
            return self.get(name)
        except NotFoundError:
            return None

    def served_by(self, version_id: str) -> builtins.list[ServingRoute]:
        """The deployments whose targets resolve to the model version ``version_id`` now, each
        with the target's role and the reference it goes through (computed, not stored)."""
        with self.store.read() as tx:
            return served_by(tx, version_id)

    def serving_model(self, model: str) -> builtins.list[ServingRoute]:
        """Every deployment target that resolves to some version of ``model`` now."""
        with self.store.read() as tx:
            return serving_routes(tx, models={model})

    def apply(self, spec: DeploymentSpec, actor: Actor, source: str = "api") -> DeploymentPublic:
        """Create or replace the deployment ``spec.name`` (editor role)."""
        actor.require("editor")
        now = utcnow()
        body = spec.model_dump(mode="json", exclude_defaults=True)
        with self.store.transaction() as tx:
            row = tx.get(t.deployments, for_update=True, name=spec.name)
            if row is None:
                new: dict[str, Any] = {"id": new_id("deployment"), "name": spec.name, "spec": body,
                       "source": source, "updated_at": now, "created_at": now,
                       "created_by": actor.name}  # fmt: skip
                tx.insert(t.deployments, new)
                tx.audit(actor.name, "deployment.create", "deployment", new["id"], None, body)
                result = new
            elif row["spec"] == body and row["source"] == source:
                result = row  # unchanged (e.g. each server worker loading the same file)
            else:
                tx.update(t.deployments, {"id": row["id"]},
                          {"spec": body, "source": source, "updated_at": now})  # fmt: skip
                tx.audit(actor.name, "deployment.update", "deployment", row["id"],
                         row["spec"], body)  # fmt: skip
                result = {**row, "spec": body, "source": source}
        self._notify(spec.name)
        return _public(result)

    def apply_many(
        self, specs: Sequence[DeploymentSpec], actor: Actor, source: str = "api"
    ) -> Sequence[DeploymentPublic]:
        return [self.apply(spec, actor, source) for spec in specs]

    def apply_file(self, path: str | Path, actor: Actor) -> Sequence[DeploymentPublic]:
        """Load a YAML file of deployments into the store (source 'file')."""
        return self.apply_many(read_deployments_file(path), actor, source="file")

    def delete(self, name: str, actor: Actor) -> None:
        actor.require("editor")
        with self.store.transaction() as tx:
            row = tx.get(t.deployments, for_update=True, name=name)
            if row is None:
                raise NotFoundError(f"no deployment named '{name}'")
            tx.delete(t.deployments, {"id": row["id"]})
            tx.audit(actor.name, "deployment.delete", "deployment", row["id"], row["spec"], None)
        self._notify(name)


def _public(row: Row) -> DeploymentPublic:
    return DeploymentPublic(
        id=row["id"],
        name=row["name"],
        spec=DeploymentSpec.model_validate(row["spec"]),
        source=row["source"],
        created_by=row.get("created_by", ""),
        updated_at=row.get("updated_at"),
    )
