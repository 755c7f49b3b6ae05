"""Request dependencies: the container of the app and the authenticated actor.

Credentials come as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``; only health
endpoints skip them. Routes receive an Actor, never a key or a session.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from llmloop.services.actors import Actor
from llmloop.services.container import Container


def get_container(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


def extract_key(request: Request) -> str | None:
    auth = request.headers.get("authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return request.headers.get("x-api-key")


def get_actor(request: Request) -> Actor:
    cached = getattr(request.state, "actor", None)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    actor = get_container(request).keys.authenticate(extract_key(request))
    request.state.actor = actor
    return actor


ContainerDep = Annotated[Container, Depends(get_container)]
ActorDep = Annotated[Actor, Depends(get_actor)]
