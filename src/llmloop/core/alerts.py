"""Alert values: a rule on a monitored metric or a drift result, its state and its events.

A rule compares a metric over a trailing window with a threshold; it must hold ``for_s``
seconds before the rule fires (ok → pending → firing) and it recovers (firing → ok) when the
comparison stops holding. Evaluating rules and sending notifications is ``services/alerts.py``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field, HttpUrl, model_validator

from llmloop.core.base import Name, Timestamped, Value
from llmloop.core.monitoring import METRICS

AlertState = Literal["ok", "pending", "firing"]
Comparison = Literal[">", ">=", "<", "<="]
DRIFT_PREFIX = "drift."


def compare(value: float, op: Comparison, threshold: float) -> bool:
    if op == ">":
        return value > threshold
    if op == ">=":
        return value >= threshold
    if op == "<":
        return value < threshold
    return value <= threshold


class AlertRuleCreate(Value):
    name: Name
    metric: str = Field(
        description="A monitoring metric (latency_p95, error_rate, ...) or 'drift.<metric>' "
        "(the share of drifted results of that drift metric in the window, 0..1)."
    )
    comparison: Comparison = ">"
    threshold: float
    window_s: float = Field(default=300, gt=0, le=30 * 86400, description="Trailing window.")
    for_s: float = Field(default=0, ge=0, description="How long it must hold before firing.")
    deployment: str | None = Field(default=None, description="Only this deployment.")
    webhook_url: HttpUrl | None = Field(default=None, description="POSTed JSON on fire/recover.")

    @model_validator(mode="after")
    def _check(self) -> AlertRuleCreate:
        drift_metric = self.metric.startswith(DRIFT_PREFIX) and len(self.metric) > len(DRIFT_PREFIX)
        if self.metric not in METRICS and not drift_metric:
            raise ValueError(f"unknown metric {self.metric!r}; use one of {', '.join(METRICS)} "
                             "or drift.<metric>")  # fmt: skip
        return self


class AlertRulePublic(Timestamped):
    id: str
    name: str
    spec: AlertRuleCreate
    state: AlertState
    pending_since: datetime | None
    changed_at: datetime | None
    last_value: float | None
    created_by: str


class AlertEventPublic(Value):
    id: int
    rule_id: str
    at: datetime
    state: str = Field(description="'firing' or 'resolved'.")
    value: float | None
    message: str
    delivered: bool
