"""Datasets and their versions: canonical content, hash, schema, artifact, lineage, audit.

Rows are stored as canonical JSON lines (sorted keys, UTF-8) so the same rows always hash the
same. A version never changes; re-registering identical content is a conflict naming the
existing version. Reading files, profiling and cleaning are the data adapters' job.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Iterable
from itertools import islice

from llmloop.artifacts.base import ArtifactStore
from llmloop.core.base import MAX_VERSION, ArtifactRef, JsonDict
from llmloop.core.datasets import (
    DatasetCreate,
    DatasetPublic,
    DatasetVersionCreate,
    DatasetVersionPublic,
)
from llmloop.core.ids import new_id
from llmloop.data.shapes import canonical_line
from llmloop.errors import ConflictError, InvalidInputError, NotFoundError
from llmloop.services.actors import Actor
from llmloop.services.owners import get_or_create_owner
from llmloop.store import tables as t
from llmloop.store.registry import Row, Store, Tx, utcnow


def canonical_jsonl(rows: Iterable[JsonDict]) -> bytes:
    """Sorted-key JSON lines (the data stage's canonical form); the basis of the content hash."""
    lines = []
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise InvalidInputError(f"row {index} is not an object")
        lines.append(canonical_line(row))
    return b"".join(lines)


def infer_shape(rows: list[JsonDict]) -> str:
    """chat, preference, instruction, text or table, from the fields every row has."""
    if not rows:
        return "table"
    common = set(rows[0])
    for row in rows[1:]:
        common &= set(row)
    if "messages" in common:
        return "chat"
    if {"prompt", "chosen", "rejected"} <= common:
        return "preference"
    if {"prompt", "response"} <= common or {"prompt", "completion"} <= common:
        return "instruction"
    if "text" in common:
        return "text"
    return "table"


class SchemaBuilder:
    """Field -> JSON type name, built incrementally; a field with mixed types is 'mixed'."""

    _NAMES = {
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        list: "array",
        dict: "object",
        type(None): "null",
    }

    def __init__(self) -> None:
        self.schema: dict[str, str] = {}

    def update(self, rows: Iterable[JsonDict]) -> None:
        for row in rows:
            for key, value in row.items():
                kind = self._NAMES.get(type(value), "string")
                seen = self.schema.get(key)
                if seen is None or seen == "null":
                    self.schema[key] = kind
                elif kind not in (seen, "null"):
                    mixed = "number" if {seen, kind} == {"integer", "number"} else "mixed"
                    self.schema[key] = mixed

    def result(self) -> dict[str, str]:
        return dict(sorted(self.schema.items()))


def infer_schema(rows: Iterable[JsonDict]) -> dict[str, str]:
    """Field -> JSON type name of ``rows``."""
    builder = SchemaBuilder()
    builder.update(rows)
    return builder.result()


class DatasetService:
    def __init__(self, store: Store, artifacts: ArtifactStore) -> None:
        self.store = store
        self.artifacts = artifacts

    def _dataset(self, tx: Tx, name: str, lock: bool = False) -> Row:
        row = tx.get(t.datasets, for_update=lock, name=name)
        if row is None:
            raise NotFoundError(f"no dataset named '{name}'")
        return row

    def _public(self, tx: Tx, row: Row) -> DatasetPublic:
        latest = tx.max_value(t.dataset_versions, "version", dataset_id=row["id"])
        return DatasetPublic(
            id=row["id"],
            name=row["name"],
            description=row["description"],
            created_at=row["created_at"],
            latest_version=latest,
        )

    def create(self, spec: DatasetCreate, actor: Actor) -> DatasetPublic:
        actor.require("editor")
        row: Row = {
            "id": new_id("dataset"),
            "name": spec.name,
            "description": spec.description,
            "created_at": utcnow(),
            "created_by": actor.name,
        }
        with self.store.transaction() as tx:
            if tx.get(t.datasets, name=spec.name) is not None:
                raise ConflictError(f"dataset '{spec.name}' already exists")
            tx.insert(t.datasets, row)
            tx.audit(actor.name, "dataset.create", "dataset", row["id"], None, row)
            return self._public(tx, row)

    def ensure(self, name: str, actor: Actor, description: str = "") -> DatasetPublic:
        """The dataset named ``name``, created when missing."""
        with self.store.read() as tx:
            row = tx.get(t.datasets, name=name)
            if row is not None:
                return self._public(tx, row)
        try:
            return self.create(DatasetCreate(name=name, description=description), actor)
        except ConflictError:  # created meanwhile by someone else
            return self.get(name)

    def count(self) -> int:
        """How many data sets there are."""
        with self.store.read() as tx:
            return tx.count(t.datasets)

    def list(self, limit: int = 100, offset: int = 0) -> list[DatasetPublic]:
        with self.store.read() as tx:
            rows = tx.select(t.datasets, order_by="name", limit=limit, offset=offset)
            return [self._public(tx, r) for r in rows]

    def get(self, name: str) -> DatasetPublic:
        with self.store.read() as tx:
            return self._public(tx, self._dataset(tx, name))

    def create_version(
        self, name: str, spec: DatasetVersionCreate, actor: Actor, create_missing: bool = True
    ) -> DatasetVersionPublic:
        """Register rows as a new immutable version of dataset ``name``."""
        actor.require("editor")
        rows = list(spec.rows)
        if not rows:  # as the data stage refuses one: nothing could train or evaluate on it
            raise InvalidInputError("a dataset version needs at least one row")
        content = canonical_jsonl(rows)
        ref = self.artifacts.put(content, name=f"{name}.jsonl")
        return self.register_version(
            name,
            ref,
            row_count=len(rows),
            shape=spec.shape or infer_shape(rows),
            schema=infer_schema(rows),
            actor=actor,
            parent_version=spec.parent_version,
            recipe=spec.recipe,
            description=spec.description,
            create_missing=create_missing,
        )

    def register_version(
        self,
        name: str,
        ref: ArtifactRef,
        row_count: int,
        shape: str,
        schema: dict[str, str],
        actor: Actor,
        parent_version: int | None = None,
        recipe: JsonDict | None = None,
        description: str = "",
        profile: JsonDict | None = None,
        sources: builtins.list[str] | None = None,
        create_missing: bool = True,
    ) -> DatasetVersionPublic:
        """Record an already stored canonical JSONL artifact as the next version."""
        actor.require("editor")
        with self.store.transaction() as tx:
            ds = get_or_create_owner(tx, t.datasets, "dataset", name, actor, create_missing)
            same = tx.get(t.dataset_versions, dataset_id=ds["id"], content_hash=ref.sha256)
            if same is not None:
                raise ConflictError(
                    f"dataset '{name}' already has this content as version {same['version']}",
                    existing_version=same["version"],
                )
            parent_id = None
            if parent_version is not None:
                parent = tx.get(t.dataset_versions, dataset_id=ds["id"], version=parent_version)
                if parent is None:
                    raise NotFoundError(f"dataset '{name}' has no version {parent_version}")
                parent_id = parent["id"]
            number = (tx.max_value(t.dataset_versions, "version", dataset_id=ds["id"]) or 0) + 1
            row: Row = {
                "id": new_id("dataset_version"),
                "dataset_id": ds["id"],
                "version": number,
                "content_hash": ref.sha256,
                "row_count": row_count,
                "shape": shape,
                "schema": schema,
                "parent_id": parent_id,
                "recipe": recipe,
                "artifact_uri": ref.uri,
                "artifact_sha256": ref.sha256,
                "artifact_size": ref.size,
                "description": description,
                "profile": profile,
                "created_at": utcnow(),
                "created_by": actor.name,
            }
            tx.insert(t.dataset_versions, row)
            if parent_id:
                tx.add_edge(parent_id, row["id"], "derived")
            for source in sources or ():
                tx.add_edge(source, row["id"], "source")
            tx.audit(
                actor.name,
                "dataset_version.create",
                "dataset_version",
                row["id"],
                None,
                {k: v for k, v in row.items() if k != "profile"},
            )
            return _version_public(row, name)

    def list_versions(self, name: str) -> builtins.list[DatasetVersionPublic]:
        with self.store.read() as tx:
            ds = self._dataset(tx, name)
            rows = tx.select(t.dataset_versions, {"dataset_id": ds["id"]}, order_by="version")
            return [_version_public(r, name) for r in rows]

    def get_version(self, name: str, version: int | str = "latest") -> DatasetVersionPublic:
        with self.store.read() as tx:
            ds = self._dataset(tx, name)
            if version == "latest":
                number = tx.max_value(t.dataset_versions, "version", dataset_id=ds["id"])
                if number is None:
                    raise NotFoundError(f"dataset '{name}' has no versions yet")
            else:
                number = _version_number(version)
            row = (
                tx.get(t.dataset_versions, dataset_id=ds["id"], version=number)
                if number <= MAX_VERSION
                else None
            )
            if row is None:
                raise NotFoundError(f"dataset '{name}' has no version {version}")
            return _version_public(row, name)

    def get_version_by_id(self, version_id: str) -> DatasetVersionPublic:
        with self.store.read() as tx:
            row = tx.get(t.dataset_versions, id=version_id)
            if row is None:
                raise NotFoundError(f"no dataset version with id '{version_id}'")
            ds = tx.get(t.datasets, id=row["dataset_id"])
            assert ds is not None
            return _version_public(row, ds["name"])

    def read_rows(self, version: DatasetVersionPublic) -> builtins.list[JsonDict]:
        """The rows of a version, read back from its artifact."""
        with self.artifacts.open(version.artifact) as fh:
            return [json.loads(line) for line in fh.read().decode("utf-8").splitlines() if line]

    def version_with_content(self, name: str, content_hash: str) -> int | None:
        """The version of dataset ``name`` holding exactly this content, if any."""
        with self.store.read() as tx:
            ds = tx.get(t.datasets, name=name)
            if ds is None:
                return None
            same = tx.get(t.dataset_versions, dataset_id=ds["id"], content_hash=content_hash)
            return None if same is None else int(same["version"])

    def page_rows(
        self, version: DatasetVersionPublic, offset: int = 0, limit: int = 100
    ) -> builtins.list[JsonDict]:
        """Rows ``offset`` to ``offset + limit`` of a version, read line by line: a page of a
        large version costs the lines before it, never the whole version in memory."""
        if offset < 0 or limit < 0:
            raise InvalidInputError("offset and limit must not be negative")
        with self.artifacts.open(version.artifact) as fh:
            lines = (line for line in fh if line.strip())
            return [json.loads(line) for line in islice(lines, offset, offset + limit)]

    def set_profile(self, version_id: str, profile: JsonDict, actor: Actor) -> None:
        """Attach the EDA facts to a version (derived data, not part of its content)."""
        actor.require("editor")
        with self.store.transaction() as tx:
            if tx.update(t.dataset_versions, {"id": version_id}, {"profile": profile}) == 0:
                raise NotFoundError(f"no dataset version with id '{version_id}'")
            tx.audit(
                actor.name,
                "dataset_version.profile",
                "dataset_version",
                version_id,
                None,
                {"profile_keys": sorted(profile)},
            )


def _version_number(version: int | str) -> int:
    try:
        number = int(version)
    except (TypeError, ValueError):
        raise InvalidInputError(f"version must be a number or 'latest', not {version!r}")
    if number < 1:
        raise InvalidInputError("version numbers start at 1")
    return number


def _version_public(row: Row, name: str) -> DatasetVersionPublic:
    return DatasetVersionPublic(
        id=row["id"],
        dataset_id=row["dataset_id"],
        dataset_name=name,
        version=row["version"],
        content_hash=row["content_hash"],
        row_count=row["row_count"],
        shape=row["shape"],
        schema_=row["schema"],
        parent_id=row["parent_id"],
        recipe=row["recipe"],
        artifact=ArtifactRef(
            uri=row["artifact_uri"], sha256=row["artifact_sha256"], size=row["artifact_size"]
        ),
        description=row["description"],
        profile=row["profile"],
        created_at=row["created_at"],
        created_by=row["created_by"],
    )
