"""The closed loop in the SDK: feedback, annotation queues, monitoring, alerts, drift, curation
and rollouts, with the same verbs as ``llmloop feedback|monitor|alerts|drift|curate|rollout``
and the REST routes under ``/api``. Each method checks its arguments (``client/checks.py``),
then calls the service in process or the route over HTTP; both return the same values.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, get_args

from llmloop.client import checks
from llmloop.client.calls import Calls, run_sync
from llmloop.client.transport import HttpCall
from llmloop.core.alerts import AlertEventPublic, AlertRuleCreate, AlertRulePublic
from llmloop.core.base import MAX_VERSION
from llmloop.core.deployments import DeploymentPublic
from llmloop.core.feedback import (
    CurateCreate,
    CurateResult,
    FeedbackCreate,
    FeedbackPublic,
    ItemPublic,
    LabelSchema,
    LabelSubmit,
    QueueCounts,
    QueueCreate,
    QueueFilter,
    QueuePublic,
)
from llmloop.core.monitoring import (
    Dimension,
    DriftReport,
    DriftResultPublic,
    DriftRunCreate,
    MetricsRow,
    Window,
)
from llmloop.errors import InvalidInputError
from llmloop.services.rollout import RolloutDecision

Spec = dict[str, Any]
DIMENSIONS: tuple[str, ...] = get_args(Dimension)
MAX_LEASE_S = 86400.0


def _group_param(group_by: list[str] | None) -> list[str] | None:
    """``group_by`` for the query string: an empty list is one empty value (no groups)."""
    if group_by is None:
        return None
    for dim in group_by:
        checks.choice(dim, DIMENSIONS, "group_by")
    return list(group_by) or [""]


class LoopMethods(Calls):
    # --- feedback ----------------------------------------------------------------------------

    def add_feedback(
        self,
        trace_id: str,
        kind: Literal["thumbs", "score", "comment", "correction", "preference", "label"],
        **fields: Any,
    ) -> FeedbackPublic:
        """Feedback on a trace; ``fields`` of :class:`FeedbackCreate` (value, name, scale_min,
        scale_max, comment, correction, alternative, preferred, user)."""
        checks.entity_id(trace_id, "trace")
        spec = checks.build(FeedbackCreate, kind=kind, **fields)
        return self._do(
            FeedbackPublic,
            lambda c, a: c.feedback.add(trace_id, spec, a),
            HttpCall("POST", f"/api/traces/{trace_id}/feedback", spec),
        )

    def list_feedback(self, trace_id: str | None = None, limit: int = 100) -> list[FeedbackPublic]:
        """Feedback on one trace (oldest first), or the newest ``limit`` of all traces."""
        if trace_id is not None:
            checks.entity_id(trace_id, "trace")
            return self._do(
                list[FeedbackPublic],
                lambda c, a: c.feedback.list(trace_id),
                HttpCall("GET", f"/api/traces/{trace_id}/feedback"),
            )
        checks.page(limit)
        return self._do(
            list[FeedbackPublic],
            lambda c, a: c.feedback.list(None, limit),
            HttpCall("GET", "/api/feedback", params={"limit": limit}),
        )

    def curate(self, dataset: str, format: Literal["sft", "dpo"], **fields: Any) -> CurateResult:
        """Traces → a new dataset version; ``fields`` of :class:`CurateCreate` (filter,
        sft_style, corrected_only, pii, pii_key, description)."""
        spec = checks.build(CurateCreate, dataset=dataset, format=format, **fields)
        return self._do(
            CurateResult,
            lambda c, a: c.curation.curate(spec, a),
            HttpCall("POST", "/api/curate", spec),
        )

    # --- annotation --------------------------------------------------------------------------

    def create_queue(
        self,
        name: str,
        label_schema: LabelSchema | Spec,
        filter: QueueFilter | Spec | None = None,
        source: Literal["traces", "dataset"] = "traces",
        ordering: Literal["created", "uncertainty"] = "created",
    ) -> QueuePublic:
        spec = checks.build(
            QueueCreate,
            name=name,
            source=source,
            ordering=ordering,
            label_schema=checks.coerce(LabelSchema, label_schema),
            filter=checks.coerce(QueueFilter, filter),
        )
        return self._do(
            QueuePublic,
            lambda c, a: c.annotation.create_queue(spec, a),
            HttpCall("POST", "/api/annotation/queues", spec),
        )

    def list_queues(self) -> list[QueuePublic]:
        return self._do(
            list[QueuePublic],
            lambda c, a: c.annotation.list_queues(),
            HttpCall("GET", "/api/annotation/queues"),
        )

    def get_queue(self, name: str) -> QueuePublic:
        checks.name(name, "queue")
        return self._do(
            QueuePublic,
            lambda c, a: c.annotation.get_queue(name),
            HttpCall("GET", f"/api/annotation/queues/{name}"),
        )

    def queue_counts(self, name: str) -> QueueCounts:
        checks.name(name, "queue")
        return self._do(
            QueueCounts,
            lambda c, a: c.annotation.counts(name),
            HttpCall("GET", f"/api/annotation/queues/{name}/counts"),
        )

    def refill_queue(self, name: str) -> int:
        """Add the items that match the queue's filter now; returns how many were added."""
        checks.name(name, "queue")
        result = self._do(
            None,
            lambda c, a: {"added": c.annotation.refill(name, a)},
            HttpCall("POST", f"/api/annotation/queues/{name}/refill"),
        )
        return int(result["added"])

    def next_item(self, name: str, lease_s: float = 900.0) -> ItemPublic | None:
        """The item this caller holds, else the next free one, leased for ``lease_s``; None
        when the queue has nothing left for anyone."""
        checks.name(name, "queue")
        if isinstance(lease_s, bool) or not isinstance(lease_s, int | float):
            raise InvalidInputError("lease_s must be a number of seconds")
        if not 0 < lease_s <= MAX_LEASE_S:
            raise InvalidInputError(f"lease_s must be above 0 and at most {MAX_LEASE_S:g}")
        return self._do(
            ItemPublic | None,
            lambda c, a: c.annotation.next_item(name, a.name, lease_s),
            HttpCall("POST", f"/api/annotation/queues/{name}/next", params={"lease_s": lease_s}),
        )

    def label_item(self, name: str, item_id: int, value: str | float, text: str = "") -> ItemPublic:
        checks.name(name, "queue")
        checks.number(item_id, "item_id", 1, 2**63 - 1)
        body = checks.build(LabelSubmit, value=value, text=text)
        return self._do(
            ItemPublic,
            lambda c, a: c.annotation.label(name, item_id, body, a),
            HttpCall("POST", f"/api/annotation/queues/{name}/items/{item_id}/label", body),
        )

    def skip_item(self, name: str, item_id: int) -> ItemPublic:
        checks.name(name, "queue")
        checks.number(item_id, "item_id", 1, 2**63 - 1)
        return self._do(
            ItemPublic,
            lambda c, a: c.annotation.skip(name, item_id, a),
            HttpCall("POST", f"/api/annotation/queues/{name}/items/{item_id}/skip"),
        )

    # --- monitoring --------------------------------------------------------------------------

    def _window(
        self, since: datetime | str, until: datetime | str | None, deployment: str | None
    ) -> tuple[datetime, datetime | None, dict[str, Any]]:
        start = checks.time(since, "since")
        end = checks.time(until, "until") if until is not None else None
        if deployment is not None and len(deployment) > 128:
            raise InvalidInputError("deployment: at most 128 characters")
        params: dict[str, Any] = {"since": checks.time_param(since)}
        if until is not None:
            params["until"] = checks.time_param(until)
        if deployment is not None:
            params["deployment"] = deployment
        return start, end, params

    def monitoring_summary(
        self,
        since: datetime | str = "1h",
        until: datetime | str | None = None,
        group_by: list[str] | None = None,
        deployment: str | None = None,
    ) -> list[MetricsRow]:
        """One row per group over the window (``group_by`` default ['deployment']; [] for one
        row of everything). Times: a duration back (1h), ISO-8601 (UTC without a zone), epoch
        seconds, or a datetime."""
        start, end, params = self._window(since, until, deployment)
        params["group_by"] = _group_param(group_by)
        dims: Any = None if group_by is None else list(dict.fromkeys(group_by))
        return self._do(
            list[MetricsRow],
            lambda c, a: c.monitoring.summary(start, end, dims, deployment),
            HttpCall("GET", "/api/monitoring/summary", params=params),
        )

    def monitoring_timeseries(
        self,
        since: datetime | str = "1h",
        bucket: float | str = "5m",
        until: datetime | str | None = None,
        group_by: list[str] | None = None,
        deployment: str | None = None,
    ) -> list[MetricsRow]:
        """One row per group and time bucket (``bucket``: '5m' or seconds); buckets without
        traffic are absent."""
        start, end, params = self._window(since, until, deployment)
        bucket_s, params["bucket"] = checks.duration(bucket, "bucket")
        params["group_by"] = _group_param(group_by)
        dims: Any = None if group_by is None else list(dict.fromkeys(group_by))
        return self._do(
            list[MetricsRow],
            lambda c, a: c.monitoring.timeseries(start, bucket_s, end, dims, deployment),
            HttpCall("GET", "/api/monitoring/timeseries", params=params),
        )

    # --- alerts ------------------------------------------------------------------------------

    def create_alert_rule(
        self, name: str, metric: str, threshold: float, **fields: Any
    ) -> AlertRulePublic:
        """A rule; ``fields`` of :class:`AlertRuleCreate` (comparison, window_s, for_s,
        deployment, webhook_url)."""
        spec = checks.build(AlertRuleCreate, name=name, metric=metric, threshold=threshold,
                            **fields)  # fmt: skip
        return self._do(
            AlertRulePublic,
            lambda c, a: c.alerts.create(spec, a),
            HttpCall("POST", "/api/alerts/rules", spec),
        )

    def list_alert_rules(self) -> list[AlertRulePublic]:
        return self._do(
            list[AlertRulePublic],
            lambda c, a: c.alerts.list(),
            HttpCall("GET", "/api/alerts/rules"),
        )

    def get_alert_rule(self, name: str) -> AlertRulePublic:
        checks.name(name, "alert rule")
        return self._do(
            AlertRulePublic,
            lambda c, a: c.alerts.get(name),
            HttpCall("GET", f"/api/alerts/rules/{name}"),
        )

    def delete_alert_rule(self, name: str) -> None:
        checks.name(name, "alert rule")
        self._do(
            None,
            lambda c, a: c.alerts.delete(name, a),
            HttpCall("DELETE", f"/api/alerts/rules/{name}"),
        )

    def alert_events(self, rule: str | None = None, limit: int = 100) -> list[AlertEventPublic]:
        """Events newest first, of one rule or all."""
        checks.page(limit)
        if rule is not None and len(rule) > 128:
            raise InvalidInputError("rule: at most 128 characters")
        params: dict[str, Any] = {"limit": limit}
        if rule is not None:
            params["rule"] = rule
        return self._do(
            list[AlertEventPublic],
            lambda c, a: c.alerts.events(rule, limit),
            HttpCall("GET", "/api/alerts/events", params=params),
        )

    def evaluate_alerts(self) -> list[AlertEventPublic]:
        """Evaluate every rule now; returns the events (fired or resolved) this produced."""

        def local(c: Any, a: Any) -> list[AlertEventPublic]:
            a.require("editor")
            return run_sync(c.alerts.evaluate())

        return self._do(list[AlertEventPublic], local, HttpCall("POST", "/api/alerts/evaluate"))

    # --- drift -------------------------------------------------------------------------------

    def run_drift(
        self,
        deployment: str,
        reference: Window | Spec,
        current: Window | Spec,
        **fields: Any,
    ) -> DriftReport:
        """Compare two windows (``{'since': …, 'until': …}`` of traces, or ``{'dataset': …,
        'version': …}``); ``fields`` of :class:`DriftRunCreate` (model_version_id, alpha,
        max_samples, seed)."""
        spec = checks.build(
            DriftRunCreate, deployment=deployment, reference=checks.coerce(Window, reference),
            current=checks.coerce(Window, current), **fields,
        )  # fmt: skip
        return self._do(
            DriftReport,
            lambda c, a: c.drift.run(spec, a),
            HttpCall("POST", "/api/drift/run", spec),
        )

    def drift_results(
        self,
        deployment: str | None = None,
        metric: str | None = None,
        since: datetime | str | None = None,
        limit: int = 500,
    ) -> list[DriftResultPublic]:
        """Stored drift results, oldest first."""
        checks.page(limit, high=10_000)
        start = checks.time(since) if since is not None else None
        params: dict[str, Any] = {"limit": limit}
        for key, value in (("deployment", deployment), ("metric", metric)):
            if value is not None:
                if len(value) > (128 if key == "deployment" else 64):
                    raise InvalidInputError(f"{key}: too long")
                params[key] = value
        if since is not None:
            params["since"] = checks.time_param(since)
        return self._do(
            list[DriftResultPublic],
            lambda c, a: c.drift.history(deployment, metric, start, limit),
            HttpCall("GET", "/api/drift/results", params=params),
        )

    # --- rollouts ----------------------------------------------------------------------------

    def start_rollout(
        self, deployment: str, model: str, version: int, weight: float = 0.2, sticky: bool = True
    ) -> DeploymentPublic:
        """Canary ``version`` of ``model`` against its champion on ``deployment``."""
        checks.name(deployment, "deployment")
        checks.name(model, "model")
        checks.number(version, "version", 1, MAX_VERSION)
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 < weight < 1:
            raise InvalidInputError("the canary weight must be between 0 and 1")
        body = {"model": model, "version": version, "weight": weight, "sticky": sticky}
        return self._do(
            DeploymentPublic,
            lambda c, a: c.rollout.start_canary(deployment, model, version, a, weight, sticky),
            HttpCall("POST", f"/api/rollouts/{deployment}/start", body),
        )

    def evaluate_rollout(
        self,
        deployment: str,
        model: str,
        since: datetime | str = "1h",
        min_requests: int = 20,
        margin: float = 0.0,
        apply: bool = False,
    ) -> RolloutDecision:
        """Judge the canary on live feedback; with ``apply``, promote or roll back. A protected
        champion raises ApprovalRequiredError naming the waiting approval (``extra
        ['approval_id']``): once a second admin approves it, call this again to finish."""
        checks.name(deployment, "deployment")
        checks.name(model, "model")
        start = checks.time(since)
        checks.number(min_requests, "min_requests", 1, 1_000_000)
        if isinstance(margin, bool) or not isinstance(margin, int | float) or abs(margin) > 1:
            raise InvalidInputError("margin must be a number from -1 to 1")
        body = {"model": model, "since": checks.time_param(since), "min_requests": min_requests,
                "margin": margin, "apply": apply}  # fmt: skip

        def local(c: Any, a: Any) -> RolloutDecision:
            if apply:
                a.require("editor")
            decision = c.rollout.evaluate(deployment, model, start, min_requests, margin)
            return c.rollout.apply(decision, a) if apply else decision

        return self._do(
            RolloutDecision, local, HttpCall("POST", f"/api/rollouts/{deployment}/evaluate", body)
        )

    def rollback_rollout(self, deployment: str, model: str, reason: str = "") -> RolloutDecision:
        """Stop the canary now: the champion serves alone again."""
        checks.name(deployment, "deployment")
        checks.name(model, "model")
        if len(reason) > 10_000:
            raise InvalidInputError("reason: at most 10000 characters")
        body = {"model": model, "reason": reason}
        return self._do(
            RolloutDecision,
            lambda c, a: c.rollout.rollback(deployment, model, a, reason),
            HttpCall("POST", f"/api/rollouts/{deployment}/rollback", body),
        )
