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
from llmloop.errors import ApprovalRequiredError, ConflictError, InvalidInputError
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
        actor.require("editor")
        if not 0.0 < weight < 1.0:
            raise InvalidInputError("the canary weight must be between 0 and 1")
        champion = self.c.models.get_version(model, CHAMPION)  # a canary needs one to compare
        if champion.version == challenger_version:
            raise InvalidInputError(
                f"version {challenger_version} of '{model}' is the champion already"
            )
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

    def _require_canary(self, deployment: str, model: str) -> None:
        """A decision is about a canary in progress: evaluating or applying one twice (after a
        rollback or a promotion) would compare stale traffic and record a second decision."""
        spec = self.c.deployments.get(deployment).spec
        if not any(t.model == model and t.alias == CHALLENGER for t in spec.targets):
            raise ConflictError(
                f"no canary of '{model}' runs on '{deployment}': start one (rollout start)"
            )

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
        self._require_canary(deployment, model)
        champion = self.c.models.get_version(model, CHAMPION)
        challenger = self.c.models.get_version(model, CHALLENGER)
        rows = self.c.monitoring.summary(since, group_by=["model_version"], deployment=deployment)
        by_version = {r.model_version: r for r in rows}
        champ, chall = by_version.get(champion.id), by_version.get(challenger.id)
        c_score = champ.feedback_mean if champ else None
        x_score = chall.feedback_mean if chall else None
        c_n, x_n = (champ.requests if champ else 0), (chall.requests if chall else 0)
        decision: Literal["promote", "rollback", "wait"]
        if champion.id == challenger.id:  # a promotion that waited for its approval got it
            decision = "promote"
            reason = f"the challenger (v{challenger.version}) is the champion already (approved)"
        elif c_score is None or x_score is None or min(c_n, x_n) < min_requests:
            # The counts are requests; a side without any feedback has no score to compare.
            unrated = [
                side for side, s in (("champion", c_score), ("challenger", x_score)) if s is None
            ]
            decision, reason = (
                "wait",
                (
                    f"not enough traffic yet (champion {c_n} requests, challenger {x_n}; "
                    f"need {min_requests} each"
                    + (f", and feedback on the {' and the '.join(unrated)})" if unrated else ")")
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

    def rollback(
        self, deployment: str, model: str, actor: Actor, reason: str = ""
    ) -> RolloutDecision:
        """Stop the canary now, whatever its numbers: the champion serves alone again."""
        actor.require("editor")
        self._require_canary(deployment, model)
        champion = self.c.models.get_version(model, CHAMPION)
        challenger = self.c.models.get_version(model, CHALLENGER)
        decision = RolloutDecision(
            deployment=deployment, model=model, champion_version_id=champion.id,
            challenger_version_id=challenger.id, champion_score=None, challenger_score=None,
            champion_requests=0, challenger_requests=0, decision="rollback",
            reason=reason or f"rolled back by {actor.name}",
        )  # fmt: skip
        return self.apply(decision, actor)

    def apply(
        self, decision: RolloutDecision, actor: Actor, approver: Actor | None = None
    ) -> RolloutDecision:
        """Promote or roll back; the deployment then serves the champion alone.

        A protected champion alias moves through an approval: with ``approver`` (a second
        admin, in process) it is requested and approved here; without one the request is left
        waiting and :class:`ApprovalRequiredError` names it (``approval_id``): once a second
        admin approves it, evaluate and apply again to finish. Nothing else changes before the
        alias has moved, so a refused promotion leaves the canary running and no run behind.
        """
        if decision.decision == "wait":
            return decision
        actor.require("editor")
        self._require_canary(decision.deployment, decision.model)
        if decision.decision == "promote":
            self._promote(decision, actor, approver)
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
        current = self.c.deployments.get(decision.deployment)
        spec = current.spec.model_dump(mode="json")
        spec["targets"] = [TargetSpec(model=decision.model, alias=CHAMPION, name=CHAMPION)]
        self.c.deployments.apply(DeploymentSpec.model_validate(spec), actor)
        self.c.runs.finish(run.id, "finished", actor)
        return decision.model_copy(update={"run_id": run.id})

    def _promote(self, decision: RolloutDecision, actor: Actor, approver: Actor | None) -> None:
        if self.c.models.get_version(decision.model, CHAMPION).id == decision.challenger_version_id:
            return  # moved already: an approved request, or an apply that stopped half-way
        version = self.c.models.get_version_by_id(decision.challenger_version_id).version
        try:
            self.c.models.set_alias(decision.model, CHAMPION, version, actor)
            return
        except ApprovalRequiredError:
            pass
        request = self.c.governance.request(  # asking again returns the waiting request
            ApprovalCreate(
                kind="model_alias",
                name=decision.model,
                label=CHAMPION,
                version=version,
                comment=decision.reason,
            ),
            actor,
        )
        if approver is None:
            raise ApprovalRequiredError(
                f"'{CHAMPION}' of '{decision.model}' is protected: approval {request.id} "
                f"(v{version}) waits for a second admin; evaluate and apply again once it is "
                "approved",
                approval_id=request.id,
            )
        self.c.governance.decide(request.id, True, approver, "online metrics: " + decision.reason)
