"""``llmloop db``: upgrade an empty database, report revisions, refuse an outdated schema."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import Result

from llmloop.store import db as schema

Invoke = Callable[..., Result]  # the `cli` fixture (tests/cli/conftest.py)


def _engine(home: Path) -> sa.Engine:
    return schema.create_db_engine(f"sqlite:///{home / 'llmloop.db'}")


def test_upgrade_empty_database_then_current(cli: Invoke, home: Path) -> None:
    upgraded = json.loads(cli("db", "upgrade", "--json", ok=True).stdout)
    assert upgraded["previous"] is None and upgraded["up_to_date"] is True
    current = json.loads(cli("db", "current", "--json", ok=True).stdout)
    assert current["current"] == current["head"] == upgraded["current"]
    assert "already at the newest schema" in cli("db", "upgrade", ok=True).stdout


def test_outdated_schema_is_refused_until_upgraded(cli: Invoke, home: Path) -> None:
    home.mkdir(parents=True)
    engine = _engine(home)
    schema.upgrade(engine, "+1")  # only the first migration
    if schema.current_revision(engine) == schema.head_revision(engine):
        engine.dispose()
        pytest.skip("only one migration exists")
    engine.dispose()
    refused = cli("datasets", "list")
    assert refused.exit_code == 9
    assert "llmloop db upgrade" in refused.stderr
    state = json.loads(cli("db", "current", "--json", ok=True).stdout)
    assert state["up_to_date"] is False and "llmloop db upgrade" in state["status"]
    cli("db", "upgrade", ok=True)
    cli("datasets", "list", ok=True)


def test_schema_without_a_revision_names_db_upgrade(cli: Invoke, home: Path) -> None:
    cli("db", "upgrade", ok=True)
    engine = _engine(home)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM alembic_version"))
    engine.dispose()
    result = cli("prompts", "list")
    assert result.exit_code != 0
    assert "llmloop db upgrade" in result.stderr


def test_unknown_revision_is_refused(cli: Invoke, home: Path) -> None:
    cli("db", "upgrade", ok=True)
    engine = _engine(home)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num='0000'"))
    engine.dispose()
    result = cli("models", "list")
    assert result.exit_code == 9
    assert "0000" in result.stderr and "Traceback" not in result.output
