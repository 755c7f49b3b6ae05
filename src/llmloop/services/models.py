"""Models and versions: immutable versions with lineage; aliases and stages move, audited.

A version names the run that produced it and its inputs (dataset, prompt, base model versions);
those become lineage edges. Aliases (``champion``) use the shared pointer mechanism, so a
protected alias moves only through an approval.
"""

from __future__ import annotations

import builtins

from llmloop.core.base import ArtifactRef
from llmloop.core.ids import entity_of, new_id
from llmloop.core.models import (
    ModelCreate,
    ModelPublic,
    ModelVersionCreate,
    ModelVersionPublic,
)
from llmloop.errors import ConflictError, InvalidInputError, NotFoundError
from llmloop.services.actors import Actor
from llmloop.services.owners import get_or_create_owner
from llmloop.services.pointers import MODEL_ALIAS, move_pointer, pointer_map, resolve_version
from llmloop.services.runs import check_input_ids
from llmloop.store import tables as t
from llmloop.store.registry import Row, Store, Tx, utcnow

STAGES = ("none", "staging", "production", "archived")


class ModelService:
    def __init__(self, store: Store) -> None:
        self.store = store

    def _model(self, tx: Tx, name: str, lock: bool = False) -> Row:
        row = tx.get(t.models, for_update=lock, name=name)
        if row is None:
            raise NotFoundError(f"no model named '{name}'")
        return row

    def _public(self, tx: Tx, row: Row) -> ModelPublic:
        return ModelPublic(
            id=row["id"],
            name=row["name"],
            description=row["description"],
            created_at=row["created_at"],
            aliases=pointer_map(tx, MODEL_ALIAS, row["id"], "model_versions"),
            latest_version=tx.max_value(t.model_versions, "version", model_id=row["id"]),
        )

    def create(self, spec: ModelCreate, actor: Actor) -> ModelPublic:
        actor.require("editor")
        row: Row = {
            "id": new_id("model"),
            "name": spec.name,
            "description": spec.description,
            "created_at": utcnow(),
            "created_by": actor.name,
        }
        with self.store.transaction() as tx:
            if tx.get(t.models, name=spec.name) is not None:
                raise ConflictError(f"model '{spec.name}' already exists")
            tx.insert(t.models, row)
            tx.audit(actor.name, "model.create", "model", row["id"], None, row)
            return self._public(tx, row)

    def count(self) -> int:
        """How many models there are."""
        with self.store.read() as tx:
            return tx.count(t.models)

    def list(self, limit: int = 100, offset: int = 0) -> list[ModelPublic]:
        with self.store.read() as tx:
            return [
                self._public(tx, r)
                for r in tx.select(t.models, order_by="name", limit=limit, offset=offset)
            ]

    def get(self, name: str) -> ModelPublic:
        with self.store.read() as tx:
            return self._public(tx, self._model(tx, name))

    def create_version(
        self, name: str, spec: ModelVersionCreate, actor: Actor, create_missing: bool = True
    ) -> ModelVersionPublic:
        actor.require("editor")
        with self.store.transaction() as tx:
            model = get_or_create_owner(tx, t.models, "model", name, actor, create_missing)
            if spec.run_id is not None and tx.get(t.runs, id=spec.run_id) is None:
                raise NotFoundError(f"no run with id '{spec.run_id}'")
            check_input_ids(tx, spec.inputs)
            base_is_version = entity_of(spec.base_model) == "model_version"
            if base_is_version and tx.get(t.model_versions, id=spec.base_model) is None:
                raise NotFoundError(f"no model version with id '{spec.base_model}'")
            number = (tx.max_value(t.model_versions, "version", model_id=model["id"]) or 0) + 1
            art = spec.artifact
            row: Row = {
                "id": new_id("model_version"),
                "model_id": model["id"],
                "version": number,
                "base_model": spec.base_model,
                "format": spec.format,
                "artifact_uri": art.uri if art else None,
                "artifact_sha256": art.sha256 if art else None,
                "artifact_size": art.size if art else None,
                "tokenizer": spec.tokenizer,
                "metrics": spec.metrics,
                "params": spec.params,
                "run_id": spec.run_id,
                "stage": "none",
                "status": "ready",
                "description": spec.description,
                "created_at": utcnow(),
                "created_by": actor.name,
            }
            tx.insert(t.model_versions, row)
            if spec.run_id:
                tx.add_edge(spec.run_id, row["id"], "produced")
            if base_is_version:
                tx.add_edge(spec.base_model, row["id"], "base")
            for ident in spec.inputs:
                tx.add_edge(ident, row["id"], "input")
            tx.audit(actor.name, "model_version.create", "model_version", row["id"], None, row)
            return _version_public(row, name)

    def list_versions(self, name: str) -> builtins.list[ModelVersionPublic]:
        with self.store.read() as tx:
            model = self._model(tx, name)
            rows = tx.select(t.model_versions, {"model_id": model["id"]}, order_by="version")
            return [_version_public(r, name) for r in rows]

    def get_version(self, name: str, ref: int | str = "latest") -> ModelVersionPublic:
        """A version by number, by alias (``champion``) or ``latest``."""
        with self.store.read() as tx:
            model = self._model(tx, name)
            return _version_public(resolve_version_row(tx, model, ref), name)

    def get_version_by_id(self, version_id: str) -> ModelVersionPublic:
        with self.store.read() as tx:
            row = tx.get(t.model_versions, id=version_id)
            if row is None:
                raise NotFoundError(f"no model version with id '{version_id}'")
            model = tx.get(t.models, id=row["model_id"])
            assert model is not None
            return _version_public(row, model["name"])

    def set_alias(
        self, name: str, alias: str, version: int, actor: Actor, approved: bool = False
    ) -> ModelPublic:
        actor.require("editor")
        with self.store.transaction() as tx:
            model = self._model(tx, name)
            target = tx.get(t.model_versions, model_id=model["id"], version=version)
            if target is None:
                raise NotFoundError(f"model '{name}' has no version {version}")
            move_pointer(tx, MODEL_ALIAS, model["id"], alias, target["id"], actor, approved)
            return self._public(tx, model)

    def set_stage(self, name: str, version: int, stage: str, actor: Actor) -> ModelVersionPublic:
        actor.require("editor")
        if stage not in STAGES:
            raise InvalidInputError(f"stage must be one of {', '.join(STAGES)}")
        with self.store.transaction() as tx:
            model = self._model(tx, name)
            row = tx.get(t.model_versions, for_update=True, model_id=model["id"], version=version)
            if row is None:
                raise NotFoundError(f"model '{name}' has no version {version}")
            tx.update(t.model_versions, {"id": row["id"]}, {"stage": stage})
            tx.audit(
                actor.name,
                "model_version.stage",
                "model_version",
                row["id"],
                {"stage": row["stage"]},
                {"stage": stage},
            )
            return _version_public({**row, "stage": stage}, name)

    def owner_id(self, name: str) -> str:
        with self.store.read() as tx:
            return str(self._model(tx, name)["id"])


def resolve_version_row(tx: Tx, model: Row, ref: int | str) -> Row:
    """The version row ``ref`` (a number, an alias or ``latest``) of ``model`` names now."""
    return resolve_version(tx, MODEL_ALIAS, model, ref)


def _version_public(row: Row, name: str) -> ModelVersionPublic:
    artifact = None
    if row["artifact_uri"]:
        artifact = ArtifactRef(
            uri=row["artifact_uri"], sha256=row["artifact_sha256"], size=row["artifact_size"]
        )
    return ModelVersionPublic(
        id=row["id"],
        model_id=row["model_id"],
        model_name=name,
        version=row["version"],
        base_model=row["base_model"],
        format=row["format"],
        artifact=artifact,
        tokenizer=row["tokenizer"],
        metrics=row["metrics"],
        params=row["params"],
        run_id=row["run_id"],
        stage=row["stage"],
        status=row["status"],
        description=row["description"],
        created_at=row["created_at"],
        created_by=row["created_by"],
    )
