"""Limit parsing, the backend chooser and the 0003 migration."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import sqlalchemy as sa

from llmloop.config import Settings
from llmloop.errors import ConfigError
from llmloop.services.gateway.policy import KeyLimits, make_limit_backend, new_reservation_id
from llmloop.services.gateway.policy_redis import RedisLimitBackend
from llmloop.services.gateway.policy_store import StoreLimitBackend
from llmloop.store.db import upgrade
from llmloop.store.registry import Store


def test_limits_parse_numbers_and_ignore_unknown_names() -> None:
    limits = KeyLimits.parse({"rpm": 20.0, "tpm": 1000, "budget_usd": 2, "per_deployment": 1})
    assert limits == KeyLimits(rpm=20, tpm=1000, budget_usd=2.0)
    assert isinstance(limits.rpm, int) and isinstance(limits.budget_usd, float)
    assert not limits.empty
    assert KeyLimits.parse(None).empty and KeyLimits.parse({}).empty
    assert KeyLimits.parse({"rpm": 0}).rpm == 0


@pytest.mark.parametrize(
    "bad",
    [
        {"rpm": -1},
        {"tpm": "100"},
        {"max_concurrent": True},
        {"budget_usd": math.inf},
        {"budget_usd": math.nan},
        {"rpm": [1]},
    ],
)
def test_bad_limits_are_a_config_error(bad: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        KeyLimits.parse(bad)


def test_limits_are_parsed_once_per_dict_and_ids_are_unique() -> None:
    raw: dict[str, float] = {"rpm": 5}
    assert KeyLimits.parse(raw) is KeyLimits.parse(raw)  # cached actors bring the same dict
    assert KeyLimits.parse({"rpm": 5}) == KeyLimits(rpm=5)
    assert KeyLimits.parse({"unknown": 1}).empty and KeyLimits.parse(None).empty
    assert len({new_reservation_id() for _ in range(1000)}) == 1000


async def test_the_chooser_picks_redis_when_configured(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}", check=False)
    try:
        local = make_limit_backend(Settings(home=tmp_path), store)
        assert isinstance(local, StoreLimitBackend)
        shared = make_limit_backend(
            Settings(home=tmp_path, redis_url="redis://127.0.0.1:6379/0"), store
        )
        assert isinstance(shared, RedisLimitBackend)
        await shared.aclose()
    finally:
        store.dispose()


def test_lease_must_be_positive(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}", check=False)
    with pytest.raises(ValueError):
        StoreLimitBackend(store, lease_s=0)
    store.dispose()


def test_migration_0003_creates_and_drops_the_policy_tables(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")  # an empty database is created at head
    try:
        names = set(sa.inspect(store.engine).get_table_names())
        assert {"usage_windows", "key_spend", "limit_reservations"} <= names
        upgrade_to_0002_then_back(store.engine)
    finally:
        store.dispose()


def upgrade_to_0002_then_back(engine: sa.Engine) -> None:
    from alembic import command

    from llmloop.store.db import _alembic_config

    with engine.begin() as conn:
        command.downgrade(_alembic_config(engine, conn), "0002")
    names = set(sa.inspect(engine).get_table_names())
    assert "usage_windows" not in names and "deployments" in names
    upgrade(engine)
    assert "limit_reservations" in set(sa.inspect(engine).get_table_names())


def test_migration_0003_matches_the_table_definitions(tmp_path: Path) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from llmloop.store import tables as t

    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    mine = {"usage_windows", "key_spend", "limit_reservations"}
    try:
        with store.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), t.metadata)
    finally:
        store.dispose()
    assert [d for d in diff if any(name in repr(d) for name in mine)] == []
