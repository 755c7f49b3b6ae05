"""Held OTLP log content on SQLite and PostgreSQL: the whole way through the app, records whose
span's row was still queued in another process's writer, expiry and bounds, and migration 0007.
PostgreSQL runs at 127.0.0.1:5432 (``LLMLOOP_TEST_POSTGRES_URL``); each test gets its own
schema."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from llmloop.api.app import create_app
from llmloop.config import load_settings
from llmloop.core.governance import ApiKeyCreate
from llmloop.services import otlp_pending
from llmloop.services.actors import local_actor
from llmloop.services.gateway.trace_table import TraceTable
from llmloop.services.otlp_decode import from_protobuf
from llmloop.services.otlp_logs import decode_logs
from llmloop.services.otlp_mapping import record_span_keys, to_records
from llmloop.services.otlp_pending import PendingContent
from llmloop.store import db
from llmloop.store import tables as t
from llmloop.store.registry import Store

FIXTURES = Path(__file__).parent / "fixtures"
PROTOBUF = "application/x-protobuf"
SPANS = (FIXTURES / "openai_v2_legacy.pb").read_bytes()
LOGS = (FIXTURES / "openai_v2_legacy_logs.pb").read_bytes()
PG_URL = os.environ.get(
    "LLMLOOP_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    admin = sa.create_engine(PG_URL, connect_args={"connect_timeout": 3})
    schema = f"t_{secrets.token_hex(6)}"
    try:
        with admin.begin() as conn:
            conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    except sa.exc.OperationalError:
        admin.dispose()
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not reachable at {PG_URL}")
        pytest.skip(f"PostgreSQL is not reachable at {PG_URL}")
    sep = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


@pytest.fixture
def served(database_url: str, tmp_path: Path) -> Iterator[tuple[FastAPI, TestClient]]:
    settings = load_settings({"home": str(tmp_path / "home"), "database_url": database_url}, env={})
    app = create_app(settings)
    key = app.state.container.keys.create(ApiKeyCreate(name="k", role="editor"), local_actor())
    with TestClient(app, headers={"Authorization": f"Bearer {key.secret}"}) as client:
        yield app, client
    app.state.container.close()


def _post(client: TestClient, path: str, body: bytes) -> None:
    response = client.post(f"/otlp/v1/{path}", content=body, headers={"Content-Type": PROTOBUF})
    assert response.status_code == 200, response.text


def _texts(app: FastAPI) -> dict[str, tuple[str, str]]:
    stored = app.state.container.gateway.traces.list(deployment="app-openai_v2_legacy")
    return {t.request_text.rsplit("\n", 1)[-1]: (t.request_text, t.response_text) for t in stored}


def test_records_before_and_after_their_spans_and_again(
    served: tuple[FastAPI, TestClient],
) -> None:
    app, client = served
    writer = app.state.container.gateway.writer
    _post(client, "logs", LOGS)
    _post(client, "traces", SPANS)
    client.portal.call(writer.flush)
    _post(client, "logs", LOGS)  # a resend, after both
    texts = _texts(app)
    assert texts["user: Say hello to Ann"] == (
        "system: You are terse.\nuser: Say hello to Ann", "Say hello to Ann")  # fmt: skip
    assert texts["tool: sunny, 21C"][1] == "sunny, 21C"
    with app.state.container.store.read() as tx:
        assert tx.count(t.otlp_log_events) == 23
        # every held record was merged into its row; the spans' rows are noted
        assert tx.count(t.otlp_log_events, trace_row_id=None) == 0
        assert tx.count(t.otlp_log_spans) == 10


def test_a_row_stored_after_its_records_takes_them_on_the_next_ingest(database_url: str) -> None:
    """Another server process noted the spans and queued their rows; the records came here
    before those rows were stored. They wait, and are merged once the rows are there."""
    store = Store(database_url)
    try:
        actor = local_actor()
        records = to_records(from_protobuf(SPANS), actor)
        pending = PendingContent(store, 4000)
        rows = {k: r.id for r in records for k in record_span_keys(r)}
        assert pending.claim(rows) == {}  # the other process: nothing held yet
        known, stored = pending.hold(decode_logs(LOGS, PROTOBUF, None).events, actor.key_id)
        assert stored == 23 and set(known.values()) <= set(rows.values())
        assert pending.apply(known) == set(known)  # no row is stored yet
        assert pending.sweep() == 0
        table = TraceTable(store, 4000)
        table.insert([table.row(r) for r in records])  # the other writer catches up
        pending._swept_at = 0.0
        assert pending.sweep() == len(known) == 9  # the embedding call has no records
        with store.read() as tx:
            texts = {r["request_text"] for r in tx.select(t.traces)}
            assert tx.count(t.otlp_log_events, trace_row_id=None) == 0
        assert "system: You are terse.\nuser: Say hello to Ann" in texts
    finally:
        store.dispose()


def test_held_records_expire_and_are_bounded(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(database_url)
    try:
        pending = PendingContent(store, 4000)
        events = decode_logs(LOGS, PROTOBUF, None).events
        pending.hold(events, "key_a")
        pending.claim({f"{i:020x}": f"tr_{i}" for i in range(30)})
        monkeypatch.setattr(otlp_pending, "MAX_EVENTS", 20)
        monkeypatch.setattr(otlp_pending, "MAX_SPANS", 25)
        pending.expire(force=True)
        with store.read() as tx:
            assert (tx.count(t.otlp_log_events), tx.count(t.otlp_log_spans)) == (20, 25)
        pending.expire()  # at most once a minute
        with store.transaction() as tx:
            old = datetime.now(UTC) - otlp_pending.HOLD - timedelta(seconds=1)
            tx.conn.execute(t.otlp_log_events.update().values(received_at=old))
        pending.hold(events[:1], "key_b")  # one fresh record
        pending.expire(force=True)
        with store.read() as tx:
            assert tx.count(t.otlp_log_events) == 1
    finally:
        store.dispose()


def test_migration_0007_upgrades_and_matches_the_tables(database_url: str) -> None:
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    engine = db.create_db_engine(database_url)
    mine = ("otlp_log_events", "otlp_log_spans")
    try:
        db.upgrade(engine, "0006")
        assert not set(mine) & set(sa.inspect(engine).get_table_names())
        db.upgrade(engine)
        assert set(mine) <= set(sa.inspect(engine).get_table_names())
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), t.metadata)
        assert [d for d in diff if any(name in repr(d) for name in mine)] == []
        with engine.begin() as conn:
            command.downgrade(db._alembic_config(engine, conn), "0006")
        assert not set(mine) & set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
