"""Monitoring aggregates through the DuckDB mirror: percentiles, rates, buckets, groups, feedback,
incremental sync and the rebuild after deletes; cross-checked against numpy."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from tests.unit.loop.loop_data import NOW, add_traces, minutes

from llmloop.core.feedback import FeedbackCreate
from llmloop.core.monitoring import MonitorQuery, parse_duration, parse_since
from llmloop.errors import InvalidInputError
from llmloop.services.actors import local_actor
from llmloop.services.container import Container
from llmloop.store import tables as t


def _load(c: Container) -> list[float]:
    rng = np.random.default_rng(1)
    lat = [float(x) for x in rng.gamma(2.0, 100.0, size=200)]
    add_traces(
        c,
        [
            {
                "at": NOW + timedelta(seconds=3 * i),
                "latency_ms": lat[i],
                "ttft_ms": lat[i] / 4,
                "input_tokens": 10,
                "output_tokens": 5,
                "cost": 0.001,
                "status": "error" if i % 10 == 0 else "ok",
                "model_version_id": f"mv_{i % 2}",
                "guard_verdicts": [{"action": "block"}] if i % 20 == 0 else None,
                "extra": {"llmloop.prompt_version_id": "prv_A"},
            }
            for i in range(200)
        ],
    )
    add_traces(c, [{"at": NOW, "kind": "shadow", "latency_ms": 1e6}])  # shadows are not counted
    return lat


def test_summary_matches_numpy(container: Container) -> None:
    lat = _load(container)
    mon = container.monitoring
    (row,) = mon.summary(NOW, NOW + minutes(10))
    assert row.deployment == "dep" and row.requests == 200
    for q, got in ((50, row.latency_p50), (95, row.latency_p95), (99, row.latency_p99)):
        assert got == pytest.approx(np.percentile(lat, q))
    assert row.ttft_p95 == pytest.approx(np.percentile(lat, 95) / 4)
    assert row.error_rate == pytest.approx(0.1) and row.guard_block_rate == pytest.approx(0.05)
    assert (row.input_tokens, row.output_tokens) == (2000, 1000)
    assert row.cost == pytest.approx(0.2) and row.request_rate == pytest.approx(200 / 600)
    assert row.feedback_mean is None
    by_mv = mon.summary(NOW, NOW + minutes(10), group_by=["model_version", "prompt_version"])
    assert [(r.model_version, r.prompt_version, r.requests) for r in by_mv] == [
        ("mv_0", "prv_A", 100),
        ("mv_1", "prv_A", 100),
    ]


def test_timeseries_buckets_and_incremental_sync(container: Container) -> None:
    _load(container)
    mon = container.monitoring
    series = mon.timeseries(NOW, 300, NOW + minutes(10))
    assert [r.requests for r in series] == [100, 100]
    assert series[1].bucket is not None and series[1].bucket - series[0].bucket == minutes(5)
    ids = add_traces(container, [{"at": NOW + minutes(11)} for _ in range(3)])
    container.feedback.add(ids[0], FeedbackCreate(kind="thumbs", value=1), local_actor())
    container.feedback.add(
        ids[1],
        FeedbackCreate(kind="score", name="h", value=1, scale_min=1, scale_max=5),
        local_actor(),
    )
    series = mon.timeseries(NOW, 300, NOW + minutes(15))
    assert [r.requests for r in series] == [100, 100, 3]
    assert series[-1].feedback_mean == pytest.approx(0.5)
    assert mon.metric("error_rate", 600, now=NOW + minutes(10)) == pytest.approx(0.1)
    assert mon.metric("latency_p95", 60, now=NOW - minutes(5)) is None
    assert mon.metric("requests", 60, now=NOW - minutes(5)) == 0.0
    with container.store.transaction() as tx:  # the newest rows deleted: the mirror starts over
        tx.conn.execute(t.traces.delete().where(t.traces.c.at > NOW + minutes(9)))
    assert [r.requests for r in mon.timeseries(NOW, 300, NOW + minutes(15))] == [100, 81]
    with container.store.transaction() as tx:  # retention of the oldest rows
        tx.conn.execute(t.traces.delete().where(t.traces.c.at < NOW + minutes(1)))
    assert [r.requests for r in mon.timeseries(NOW, 300, NOW + minutes(15))] == [80, 81]


def test_bad_queries() -> None:
    with pytest.raises(InvalidInputError):
        parse_duration("5 parsecs")
    with pytest.raises(InvalidInputError):
        parse_since("yesterday-ish")
    assert parse_duration("5m") == 300
    with pytest.raises(ValueError):
        MonitorQuery(since=NOW, until=NOW)
    with pytest.raises(ValueError):
        MonitorQuery(since=NOW, until=NOW + timedelta(days=30), bucket_s=1)
