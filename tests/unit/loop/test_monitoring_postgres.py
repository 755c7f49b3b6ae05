"""The PostgreSQL path (SQL percentile_cont) gives the same aggregates as the DuckDB mirror of
SQLite, and trace selection (guard flags, feedback means) works on PostgreSQL's JSON too."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from tests.unit.loop.loop_data import NOW, add_traces, minutes

from llmloop.config import load_settings
from llmloop.core.feedback import FeedbackCreate, QueueFilter
from llmloop.services.actors import local_actor
from llmloop.services.container import Container
from llmloop.services.trace_selection import select_traces

PG_URL = os.environ.get(
    "LLMLOOP_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture
def pg_container(tmp_path: Path) -> Iterator[Container]:
    try:
        admin = sa.create_engine(PG_URL, connect_args={"connect_timeout": 3})
        schema = f"t_{secrets.token_hex(6)}"
        with admin.begin() as conn:
            conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    except Exception:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"PostgreSQL is not reachable at {PG_URL}")
    url = f"{PG_URL}?options=-csearch_path%3D{schema}"
    c = Container(load_settings({"home": str(tmp_path / "pg"), "database_url": url}, env={}))
    yield c
    c.close()
    with admin.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


def _fill(c: Container) -> list[str]:
    ids = add_traces(
        c,
        [
            {
                "at": NOW + timedelta(seconds=7 * i),
                "latency_ms": float((i * 37) % 101),
                "ttft_ms": float(i % 13),
                "status": "error" if i % 9 == 0 else "ok",
                "deployment": "a" if i % 3 else "b",
                "input_tokens": i,
                "cost": 0.5,
                "guard_verdicts": [{"action": "block", "rule_id": "r"}] if i % 11 == 0 else None,
            }
            for i in range(120)
        ],
    )
    c.feedback.add(ids[1], FeedbackCreate(kind="thumbs", value=1), local_actor())
    c.feedback.add(
        ids[2],
        FeedbackCreate(kind="score", name="h", value=2, scale_min=1, scale_max=5),
        local_actor(),
    )
    return ids


def _same(a: dict[str, object], b: dict[str, object]) -> None:
    assert a.keys() == b.keys()
    for key, value in a.items():
        if isinstance(value, float):
            assert value == pytest.approx(b[key]), key
        else:
            assert value == b[key], key


def test_postgres_matches_duckdb(pg_container: Container, container: Container) -> None:
    _fill(pg_container)
    _fill(container)
    assert not pg_container.monitoring.analytics.uses_duckdb
    pg = pg_container.monitoring.timeseries(NOW, 300.0, NOW + minutes(15))
    duck = container.monitoring.timeseries(NOW, 300.0, NOW + minutes(15))
    assert len(pg) == len(duck) == 6
    for a, b in zip(pg, duck, strict=True):
        _same(a.model_dump(), b.model_dump())
    pg_sum = pg_container.monitoring.summary(NOW, NOW + minutes(15), group_by=[])
    duck_sum = container.monitoring.summary(NOW, NOW + minutes(15), group_by=[])
    _same(pg_sum[0].model_dump(), duck_sum[0].model_dump())
    assert pg_sum[0].feedback_mean == pytest.approx((1.0 + 0.25) / 2)
    assert pg_sum[0].guard_block_rate == pytest.approx(11 / 120)


def test_selection_on_postgres(pg_container: Container) -> None:
    ids = _fill(pg_container)
    with pg_container.store.read() as tx:
        flagged = select_traces(tx, QueueFilter(flagged=True))
        low = select_traces(tx, QueueFilter(max_feedback=0.5))
    assert len(flagged) == 11 and [r["id"] for r in low] == [ids[2]]
