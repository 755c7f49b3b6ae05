"""Fixtures for the gateway policy tests: limit backends over SQLite, PostgreSQL and Redis.

Each backend kind comes as a factory so a test can open a *second* backend on the same storage
(a restart, or another gateway process). PostgreSQL gets a schema per test, Redis a key prefix
per test; both are removed afterwards and skipped with a reason when the server is unreachable.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from llmloop.services.gateway.policy import LimitBackend
from llmloop.store import tables as t
from llmloop.store.registry import Store

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/0"
POLICY_TABLES = [t.usage_windows, t.key_spend, t.limit_reservations]
#: The middle of a 60-second window, so a test's requests all fall in one window.
T0 = 60.0 * 28_333_334 + 5.0


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _pg_schema_url() -> Iterator[str]:
    try:
        admin = sa.create_engine(PG_URL)
        with admin.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as exc:
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 is unreachable: {exc.__class__.__name__}")
    schema = f"gwpol_{uuid.uuid4().hex[:10]}"
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _open_store(url: str, stores: list[Store]) -> Store:
    store = Store(url, check=False)
    t.metadata.create_all(store.engine, tables=POLICY_TABLES)
    stores.append(store)
    return store


BackendFactory = Callable[[], LimitBackend]


@pytest.fixture(params=["sqlite", "postgresql", "redis"])
async def backend_factory(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[BackendFactory]:
    """Opens backends that share one storage (a database or a Redis prefix)."""
    opened: list[LimitBackend] = []
    stores: list[Store] = []
    cleanup: list[Callable[[], object]] = []
    if request.param == "redis":
        redis_mod = pytest.importorskip("redis.asyncio")
        probe = redis_mod.Redis.from_url(REDIS_URL)
        try:
            await probe.ping()
        except Exception as exc:
            pytest.skip(f"Redis at 127.0.0.1:6379 is unreachable: {exc.__class__.__name__}")
        prefix = f"llmloop-test:{uuid.uuid4().hex[:10]}"
        from llmloop.services.gateway.policy_redis import RedisLimitBackend

        def make() -> LimitBackend:
            backend = RedisLimitBackend.from_url(REDIS_URL, prefix=prefix, clock=clock)
            opened.append(backend)
            return backend

        yield make
        async for key in probe.scan_iter(match=f"{prefix}:*"):
            await probe.delete(key)
        await probe.aclose()
    else:
        from llmloop.services.gateway.policy_store import StoreLimitBackend

        pg = _pg_schema_url() if request.param == "postgresql" else None
        url = next(pg) if pg is not None else f"sqlite:///{tmp_path / 'limits.db'}"
        if pg is not None:
            cleanup.append(lambda: next(pg, None))

        def make() -> LimitBackend:
            return StoreLimitBackend(_open_store(url, stores), clock=clock)

        yield make
    for backend in opened:
        await backend.aclose()
    for store in stores:
        await asyncio.to_thread(store.dispose)
    for step in cleanup:
        step()
