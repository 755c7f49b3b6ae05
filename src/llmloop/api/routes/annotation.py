"""REST routes of annotation queues: create, list, counts, next item, label, skip, refill."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response

from llmloop.api.deps import ActorDep, ContainerDep
from llmloop.api.routes.common import NamePath
from llmloop.core.feedback import ItemPublic, LabelSubmit, QueueCounts, QueueCreate, QueuePublic

router = APIRouter(prefix="/api/annotation/queues", tags=["annotation"])
ItemPath = Annotated[int, Path(ge=1, description="Item id.")]


@router.get("", response_model=list[QueuePublic])
def list_queues(c: ContainerDep, _: ActorDep) -> Any:
    return c.annotation.list_queues()


@router.post("", response_model=QueuePublic, status_code=201)
def create_queue(spec: QueueCreate, c: ContainerDep, actor: ActorDep) -> Any:
    return c.annotation.create_queue(spec, actor)


@router.get("/{name}", response_model=QueuePublic)
def get_queue(name: NamePath, c: ContainerDep, _: ActorDep) -> Any:
    return c.annotation.get_queue(name)


@router.get("/{name}/counts", response_model=QueueCounts)
def counts(name: NamePath, c: ContainerDep, _: ActorDep) -> Any:
    return c.annotation.counts(name)


@router.post("/{name}/refill")
def refill(name: NamePath, c: ContainerDep, actor: ActorDep) -> Any:
    return {"added": c.annotation.refill(name, actor)}


@router.post("/{name}/next", response_model=ItemPublic, responses={204: {"description": "Done."}})
def next_item(
    name: NamePath,
    c: ContainerDep,
    actor: ActorDep,
    lease_s: float = Query(900.0, gt=0, le=86400, description="How long the item is held."),
) -> Any:
    item = c.annotation.next_item(name, actor.name, lease_s)
    return item if item is not None else Response(status_code=204)


@router.post("/{name}/items/{item_id}/label", response_model=ItemPublic)
def label(
    name: NamePath, item_id: ItemPath, body: LabelSubmit, c: ContainerDep, actor: ActorDep
) -> Any:
    return c.annotation.label(name, item_id, body, actor)


@router.post("/{name}/items/{item_id}/skip", response_model=ItemPublic)
def skip(name: NamePath, item_id: ItemPath, c: ContainerDep, actor: ActorDep) -> Any:
    return c.annotation.skip(name, item_id, actor)
