"""Health and readiness: the only routes that need no key."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from llmloop import __version__
from llmloop.api.deps import ContainerDep

router = APIRouter(tags=["health"])


@router.get("/health")
def health() -> Any:
    return {"status": "ok", "version": __version__}


@router.get("/ready")
def ready(c: ContainerDep) -> Any:
    problem = c.readiness_problem()
    if problem is not None:
        return JSONResponse({"status": "unavailable", "detail": problem}, status_code=503)
    return {"status": "ready"}
