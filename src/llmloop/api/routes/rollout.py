"""REST routes of rollouts: start a canary, evaluate it (and act on the decision), roll it back.

A protected champion alias moves only through an approval decided by a second admin: evaluate
with ``apply`` answers 409 ``approval_required`` naming the waiting request (``approval_id``);
once another admin approves it (``POST /api/approvals/{id}/approve``), evaluate with ``apply``
again finishes the rollout. No caller can approve on another admin's behalf here.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from pydantic import Field

from llmloop.api.deps import ActorDep, ContainerDep
from llmloop.api.routes.common import TIME_HELP, NamePath, parse_time
from llmloop.core.base import MAX_VERSION, Name, Value
from llmloop.core.deployments import DeploymentPublic
from llmloop.services.rollout import RolloutDecision

router = APIRouter(prefix="/api/rollouts", tags=["rollout"])


class RolloutStart(Value):
    model: Name = Field(description="Registry model whose champion the challenger is set against.")
    version: int = Field(ge=1, le=MAX_VERSION, description="Challenger version number.")
    weight: float = Field(default=0.2, gt=0.0, lt=1.0, description="Challenger's traffic share.")
    sticky: bool = Field(default=True, description="The same user stays on the same side.")


class RolloutEvaluate(Value):
    model: Name
    since: str = Field(default="1h", max_length=64, description="Window start. " + TIME_HELP)
    min_requests: int = Field(default=20, ge=1, le=1_000_000, description="Rated, per side.")
    margin: float = Field(default=0.0, ge=-1.0, le=1.0, description="How much better it must be.")
    apply: bool = Field(default=False, description="Promote or roll back now.")


class RolloutRollback(Value):
    model: Name
    reason: str = Field(default="", max_length=10_000)


@router.post("/{deployment}/start", response_model=DeploymentPublic)
async def start(deployment: NamePath, body: RolloutStart, c: ContainerDep, actor: ActorDep) -> Any:
    dep = await asyncio.to_thread(
        c.rollout.start_canary, deployment, body.model, body.version, actor, body.weight,
        body.sticky,
    )  # fmt: skip
    await c.gateway.manager.reload(deployment)  # serve the split now, not at the next poll
    return dep


@router.post("/{deployment}/evaluate", response_model=RolloutDecision)
async def evaluate(
    deployment: NamePath, body: RolloutEvaluate, c: ContainerDep, actor: ActorDep
) -> Any:
    since = parse_time(body.since)
    if body.apply:
        actor.require("editor")
    decision = await asyncio.to_thread(
        c.rollout.evaluate, deployment, body.model, since, body.min_requests, body.margin
    )
    if not body.apply or decision.decision == "wait":
        return decision
    applied = await asyncio.to_thread(c.rollout.apply, decision, actor)
    await c.gateway.manager.reload(deployment)
    return applied


@router.post("/{deployment}/rollback", response_model=RolloutDecision)
async def rollback(
    deployment: NamePath, body: RolloutRollback, c: ContainerDep, actor: ActorDep
) -> Any:
    done = await asyncio.to_thread(c.rollout.rollback, deployment, body.model, actor, body.reason)
    await c.gateway.manager.reload(deployment)
    return done
