"""REST routes of feedback on traces and of curation (traces → a dataset version)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from llmloop.api.deps import ActorDep, ContainerDep
from llmloop.api.routes.common import IdPath, Limit
from llmloop.core.feedback import CurateCreate, CurateResult, FeedbackCreate, FeedbackPublic

router = APIRouter(tags=["feedback"])


@router.post("/api/traces/{trace_id}/feedback", response_model=FeedbackPublic, status_code=201)
def add_feedback(trace_id: IdPath, spec: FeedbackCreate, c: ContainerDep, actor: ActorDep) -> Any:
    return c.feedback.add(trace_id, spec, actor)


@router.get("/api/traces/{trace_id}/feedback", response_model=list[FeedbackPublic])
def trace_feedback(trace_id: IdPath, c: ContainerDep, _: ActorDep) -> Any:
    return c.feedback.list(trace_id)


@router.get("/api/feedback", response_model=list[FeedbackPublic])
def recent_feedback(c: ContainerDep, _: ActorDep, limit: Limit = 100) -> Any:
    return c.feedback.list(None, limit)


@router.post("/api/curate", response_model=CurateResult, status_code=201)
def curate(spec: CurateCreate, c: ContainerDep, actor: ActorDep) -> Any:
    return c.curation.curate(spec, actor)
