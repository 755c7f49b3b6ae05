"""Monitoring: request rate, latency and time-to-first-token percentiles, tokens, cost, error and
guard-block rates and mean feedback over traces, per deployment, model version, prompt version
(``attributes['llmloop.prompt_version_id']``) or key, in time buckets.

The numbers come from :class:`~llmloop.services.trace_analytics.TraceAnalytics` (DuckDB over
SQLite, SQL percentiles on PostgreSQL). This module picks the window and the shape of the
answer; it does not alert (``services/alerts.py``) or test for drift (``services/drift.py``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from llmloop.core.monitoring import METRICS, Dimension, MetricsRow, MonitorQuery
from llmloop.errors import InvalidInputError
from llmloop.services.trace_analytics import TraceAnalytics
from llmloop.services.trace_selection import as_utc
from llmloop.store.registry import Store


class MonitoringService:
    def __init__(self, store: Store, analytics: TraceAnalytics | None = None) -> None:
        self.store = store
        self.analytics = analytics or TraceAnalytics(store)

    def query(self, q: MonitorQuery) -> list[MetricsRow]:
        return self.analytics.aggregate(q)

    def summary(
        self,
        since: datetime,
        until: datetime | None = None,
        group_by: list[Dimension] | None = None,
        deployment: str | None = None,
    ) -> list[MetricsRow]:
        """One row per group over the whole window (a naive time is UTC)."""
        q = MonitorQuery(since=as_utc(since), until=_until(until), group_by=_dims(group_by),
                         deployment=deployment)  # fmt: skip
        return [r for r in self.analytics.aggregate(q) if r.requests > 0]

    def timeseries(
        self,
        since: datetime,
        bucket_s: float,
        until: datetime | None = None,
        group_by: list[Dimension] | None = None,
        deployment: str | None = None,
    ) -> list[MetricsRow]:
        """One row per group and bucket (buckets without traces are absent; a naive time is
        UTC). Buckets are aligned to multiples of ``bucket_s`` since the epoch, so the first and
        last may reach outside the window: their ``request_rate`` is over the part inside."""
        q = MonitorQuery(since=as_utc(since), until=_until(until), bucket_s=bucket_s,
                         group_by=_dims(group_by), deployment=deployment)  # fmt: skip
        return [r for r in self.analytics.aggregate(q) if r.requests > 0]

    def metric(
        self, metric: str, window_s: float, deployment: str | None = None,
        now: datetime | None = None,
    ) -> float | None:  # fmt: skip
        """One metric over the trailing window, all matching traces together (None: no data)."""
        if metric not in METRICS:
            raise InvalidInputError(f"unknown metric {metric!r}; use one of {', '.join(METRICS)}")
        end = _until(now)
        q = MonitorQuery(since=end - timedelta(seconds=window_s), until=end, group_by=[],
                         deployment=deployment)  # fmt: skip
        rows = self.analytics.aggregate(q)
        if not rows or rows[0].requests == 0:
            return 0.0 if metric in ("requests", "request_rate") else None
        value = getattr(rows[0], metric)
        return None if value is None else float(value)

    def close(self) -> None:
        self.analytics.close()


def _dims(group_by: list[Dimension] | None) -> list[Dimension]:
    return list(group_by) if group_by is not None else ["deployment"]


def _until(at: datetime | None) -> datetime:
    return datetime.now(UTC) if at is None else as_utc(at)
