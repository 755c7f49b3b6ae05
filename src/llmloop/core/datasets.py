"""Datasets and their immutable versions: content hash, schema, rows, parent, recipe, artifact."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from llmloop.core.base import ArtifactRef, JsonDict, Name, Timestamped, Value

RecordShape = Literal["chat", "instruction", "preference", "text", "table"]


class DatasetCreate(Value):
    name: Name = Field(description="Unique dataset name.")
    description: str = Field(default="", max_length=10_000)


class DatasetPublic(Timestamped):
    id: str
    name: str
    description: str
    latest_version: int | None = None


class DatasetVersionCreate(Value):
    """A new version from rows given inline (SDK/API); files go through ``llmloop data ingest``."""

    rows: list[JsonDict] = Field(description="The records of this version.", max_length=1_000_000)
    description: str = Field(default="", max_length=10_000)
    parent_version: int | None = Field(
        default=None, ge=1, le=2_147_483_647, description="Version this one derives from."
    )
    recipe: JsonDict | None = Field(default=None, description="The recipe that produced it.")
    shape: RecordShape | None = Field(default=None, description="Record shape; inferred if unset.")


class DatasetVersionPublic(Timestamped):
    id: str
    dataset_id: str
    dataset_name: str
    version: int
    content_hash: str = Field(description="sha256 over the canonical JSONL content.")
    row_count: int
    shape: str
    schema_: JsonDict = Field(alias="schema", description="Field name -> type name.")
    parent_id: str | None = None
    recipe: JsonDict | None = None
    artifact: ArtifactRef
    description: str = ""
    profile: JsonDict | None = None
    created_by: str = ""

    model_config = {"frozen": True, "extra": "forbid", "populate_by_name": True}
