"""REST routes of datasets and dataset versions."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from llmloop.api.deps import ActorDep, ContainerDep
from llmloop.api.routes.common import Limit, NamePath, Offset, RefPath
from llmloop.core.datasets import (
    DatasetCreate,
    DatasetPublic,
    DatasetVersionCreate,
    DatasetVersionPublic,
)

router = APIRouter(prefix="/api/datasets", tags=["datasets"])


@router.get("", response_model=list[DatasetPublic])
def list_datasets(c: ContainerDep, _: ActorDep, limit: Limit = 100, offset: Offset = 0) -> Any:
    return c.datasets.list(limit, offset)


@router.post("", response_model=DatasetPublic, status_code=201)
def create_dataset(spec: DatasetCreate, c: ContainerDep, actor: ActorDep) -> Any:
    return c.datasets.create(spec, actor)


@router.get("/{name}", response_model=DatasetPublic)
def get_dataset(name: NamePath, c: ContainerDep, _: ActorDep) -> Any:
    return c.datasets.get(name)


@router.get("/{name}/versions", response_model=list[DatasetVersionPublic])
def list_versions(name: NamePath, c: ContainerDep, _: ActorDep) -> Any:
    return c.datasets.list_versions(name)


@router.post("/{name}/versions", response_model=DatasetVersionPublic, status_code=201)
def create_version(
    name: NamePath, spec: DatasetVersionCreate, c: ContainerDep, actor: ActorDep
) -> Any:
    return c.datasets.create_version(name, spec, actor)


@router.get("/{name}/versions/{ref}", response_model=DatasetVersionPublic)
def get_version(name: NamePath, ref: RefPath, c: ContainerDep, _: ActorDep) -> Any:
    return c.datasets.get_version(name, ref)


@router.get("/{name}/versions/{ref}/rows")
def get_rows(
    name: NamePath,
    ref: RefPath,
    c: ContainerDep,
    _: ActorDep,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Any:
    version = c.datasets.get_version(name, ref)
    return {"total": version.row_count, "rows": c.datasets.page_rows(version, offset, limit)}
