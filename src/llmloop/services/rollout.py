"""Rollouts: put a challenger version on a canary slice of a deployment, judge it on live
feedback against the champion, then promote it (moving the champion alias, through an approval
when the alias is protected) or roll it back. Each decision is a recorded run with lineage to
both versions, so the registry shows why the champion changed (or did not).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from llmloop.core.base import Value
from llmloop.core.deployments import DeploymentPublic, DeploymentSpec, TargetSpec
from llmloop.core.governance import ApprovalCreate
from llmloop.core.runs import MetricPoint, RunCreate, RunInput
from llmloop.errors import ApprovalRequiredError, InvalidInputError
from llmloop.services.actors import Actor

CHAMPION, CHALLENGER = "champion", "challenger"


class RolloutDecision(Value):
    deployment: str
    model: str
    champion_version_id: str
    challenger_version_id: str
    champion_score: float | None
    challenger_score: float | None
    champion_requests: int
    challenger_requests: int
    decision: Literal["promote", "rollback", "wait"]
    reason: str
    run_id: str | None = Field(default=None, description="The run recording the decision.")


class RolloutService:
    def __init__(self, container: Any) -> None:
        self.c = container

    def start_canary(
        self,
        deployment: str,
        model: str,
        challenger_version: int,
        actor: Actor,
        weight: float = 0.2,
        sticky: bool = True,
    ) -> DeploymentPublic:
        """Point the ``challenger`` alias at a version and split traffic champion/challenger."""
        if not 0.0 < weight < 1.0:
            raise InvalidInputError("the canary weight must be between 0 and 1")
        self.c.models.get_version(model, CHAMPION)  # a canary needs a champion to compare with
        self.c.models.set_alias(model, CHALLENGER, challenger_version, actor)
        current = self.c.deployments.find(deployment)
        base = current.spec.model_dump(mode="json") if current else {"name": deployment}
        base.update(
            {
                "targets": [
                    TargetSpec(model=model, alias=CHAMPION, weight=1.0 - weight, name=CHAMPION),
                    TargetSpec(model=model, alias=CHALLENGER, weight=weight, name=CHALLENGER),
                ],
                "sticky": sticky,
            }
        )
        return self.c.deployments.apply(DeploymentSpec.model_validate(base), actor)

    def evaluate(
        self,
        deployment: str,
        model: str,
        since: datetime,
        min_requests: int = 20,
        margin: float = 0.0,
    ) -> RolloutDecision:
        """Compare mean live feedback (0..1) of the challenger with the champion's."""
        if min_requests < 1:
            raise InvalidInputError(f"min_requests must be at least 1, not {min_requests}")
        champion = self.c.models.get_version(model, CHAMPION)
        challenger = self.c.models.get_version(model, CHALLENGER)
        rows = self.c.monitoring.summary(since, group_by=["model_version"], deployment=deployment)
        by_version = {r.model_version: r for r in rows}
        champ, chall = by_version.get(champion.id), by_version.get(challenger.id)
        c_score = champ.feedback_mean if champ else None
        x_score = chall.feedback_mean if chall else None
        c_n, x_n = (champ.requests if champ else 0), (chall.requests if chall else 0)
        if c_score is None or x_score is None or min(c_n, x_n) < min_requests:
            decision, reason = (
                "wait",
                (
                    f"not enough rated traffic yet (champion {c_n}, challenger {x_n}; "
                    f"need {min_requests} each)"
                ),
            )
        elif x_score >= c_score + margin:
            decision, reason = "promote", f"challenger {x_score:.3f} >= champion {c_score:.3f}"
        else:
            decision, reason = "rollback", f"challenger {x_score:.3f} < champion {c_score:.3f}"
        return RolloutDecision(
            deployment=deployment,
            model=model,
            champion_version_id=champion.id,
            challenger_version_id=challenger.id,
            champion_score=c_score,
            challenger_score=x_score,
            champion_requests=c_n,
            challenger_requests=x_n,
            decision=decision,
            reason=reason,
        )

    def apply(
        self, decision: RolloutDecision, actor: Actor, approver: Actor | None = None
    ) -> RolloutDecision:
        """Promote or roll back; the deployment then serves the champion alone."""
        if decision.decision == "wait":
            return decision
        run = self.c.runs.create(
            RunCreate(
                name=f"rollout/{decision.deployment}",
                kind="pipeline",
                params=decision.model_dump(mode="json", exclude={"run_id"}),
                inputs=[
                    RunInput(id=decision.champion_version_id, role="champion"),
                    RunInput(id=decision.challenger_version_id, role="challenger"),
                ],
                tags={"decision": decision.decision},
            ),
            actor,
        )
        points = [
            MetricPoint(key=f"{side}_feedback", value=score)
            for side, score in (
                ("champion", decision.champion_score),
                ("challenger", decision.challenger_score),
            )
            if score is not None
        ]
        if points:
            self.c.runs.log_metrics(run.id, points, actor)
        if decision.decision == "promote":
            self._promote(decision, actor, approver)
        current = self.c.deployments.get(decision.deployment)
        spec = current.spec.model_dump(mode="json")
        spec["targets"] = [TargetSpec(model=decision.model, alias=CHAMPION, name=CHAMPION)]
        self.c.deployments.apply(DeploymentSpec.model_validate(spec), actor)
        self.c.runs.finish(run.id, "finished", actor)
        return decision.model_copy(update={"run_id": run.id})

    def _promote(self, decision: RolloutDecision, actor: Actor, approver: Actor | None) -> None:
        version = self.c.models.get_version_by_id(decision.challenger_version_id).version
        try:
            self.c.models.set_alias(decision.model, CHAMPION, version, actor)
        except ApprovalRequiredError:
            if approver is None:
                raise
            request = self.c.governance.request(
                ApprovalCreate(
                    kind="model_alias",
                    name=decision.model,
                    label=CHAMPION,
                    version=version,
                    comment=decision.reason,
                ),
                actor,
            )
            self.c.governance.decide(
                request.id, True, approver, "online metrics: " + decision.reason
            )
