"""Monitoring and drift values: the questions asked of traces and the aggregates they answer with.

A :class:`MonitorQuery` names a time range, a bucket size and the dimensions to group by; a
:class:`MetricsRow` is one group (and bucket). :class:`DriftRunCreate` names the two windows a
drift run compares and :class:`DriftResultPublic` is one stored test of it. Computing them is
``services/monitoring.py`` and ``services/drift.py``; this module only parses and validates.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import Field, model_validator

from llmloop.core.base import JsonDict, Value
from llmloop.errors import InvalidInputError

Dimension = Literal["deployment", "model_version", "prompt_version", "key"]
METRICS: tuple[str, ...] = (
    "requests", "request_rate", "latency_p50", "latency_p95", "latency_p99", "ttft_p50",
    "ttft_p95", "input_tokens", "output_tokens", "cost", "error_rate", "guard_block_rate",
    "feedback_mean",
)  # fmt: skip
DEFAULT_GROUP: tuple[Dimension, ...] = ("deployment",)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """Seconds in ``'90s'``, ``'5m'``, ``'1h'``, ``'7d'``; refuses anything else."""
    found = _DURATION.match(text)
    if not found:
        raise InvalidInputError(f"not a duration: {text!r} (use e.g. 30s, 5m, 1h, 7d)")
    seconds = float(found.group(1)) * _UNIT_S[found.group(2)]
    if seconds <= 0:
        raise InvalidInputError(f"duration must be positive: {text!r}")
    return seconds


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """A duration back from now (``'1h'``) or an ISO-8601 time (UTC if no zone is given)."""
    now = now or datetime.now(UTC)
    if _DURATION.match(text):
        return now - timedelta(seconds=parse_duration(text))
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInputError(f"not a time or duration: {text!r}") from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


class MonitorQuery(Value):
    since: datetime
    until: datetime
    bucket_s: float | None = Field(default=None, gt=0, description="None: one row per group.")
    group_by: list[Dimension] = Field(default_factory=lambda: list(DEFAULT_GROUP))
    deployment: str | None = None
    model_version_id: str | None = None

    @model_validator(mode="after")
    def _check(self) -> MonitorQuery:
        if self.until <= self.since:
            raise ValueError("until must be after since")
        if (
            self.bucket_s is not None
            and (self.until - self.since).total_seconds() / self.bucket_s > 100_000
        ):
            raise ValueError("too many buckets: use a larger bucket")
        return self


class MetricsRow(Value):
    """Aggregates of one group (and time bucket) of primary traces."""

    bucket: datetime | None = None
    deployment: str | None = None
    model_version: str | None = None
    prompt_version: str | None = None
    key: str | None = None
    requests: int
    request_rate: float = Field(description="Requests per second over the bucket or range.")
    latency_p50: float | None
    latency_p95: float | None
    latency_p99: float | None
    ttft_p50: float | None
    ttft_p95: float | None
    input_tokens: int
    output_tokens: int
    cost: float
    error_rate: float
    guard_block_rate: float
    feedback_mean: float | None = Field(default=None, description="Mean feedback on 0..1.")


class Window(Value):
    """A window of traces (``since``/``until``) or a dataset version's rows (``dataset``)."""

    since: datetime | None = None
    until: datetime | None = None
    dataset: str | None = None
    version: int | None = Field(default=None, ge=1, le=2_147_483_647)

    @model_validator(mode="after")
    def _check(self) -> Window:
        if self.dataset is None and self.since is None:
            raise ValueError("a window needs since (traces) or dataset (a version's rows)")
        return self


class DriftRunCreate(Value):
    deployment: str
    model_version_id: str | None = None
    reference: Window
    current: Window
    alpha: float = Field(default=0.05, gt=0, lt=1)
    max_samples: int = Field(default=500, ge=5, le=20_000)
    seed: int = 0


class DriftResultPublic(Value):
    id: int
    at: datetime
    deployment: str
    model_version_id: str | None
    metric: str
    test: str
    statistic: float
    p_value: float
    drifted: bool
    reference: JsonDict
    current: JsonDict
    details: JsonDict


class DriftReport(Value):
    """What one drift run found: the stored results and the metrics it could not test."""

    deployment: str
    results: list[DriftResultPublic]
    skipped: dict[str, str] = Field(default_factory=dict, description="metric -> why not tested.")

    @property
    def drifted(self) -> list[str]:
        return [r.metric for r in self.results if r.drifted]
