"""Database connections and schema state: engine creation, SQLite pragmas, Alembic upgrades.

A process opened on an outdated schema stops with :class:`SchemaOutdatedError` naming
``llmloop db upgrade``; an empty database is created at head when allowed. This module holds no
queries of the registry (``store/registry.py`` does).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from llmloop.errors import ConfigError, SchemaOutdatedError

try:
    import fcntl
except ImportError:  # Windows: no lock file; start the first commands one at a time there
    fcntl = None  # type: ignore[assignment]

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_SCHEMA_LOCK_KEY = 0x6C6C6D6C6F6F70  # "llmloop": one advisory lock per PostgreSQL database


def create_db_engine(url: str, **kwargs: Any) -> sa.Engine:
    """An Engine for ``url``; SQLite gets WAL, foreign keys and a busy timeout."""
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise ConfigError(f"not a database URL: {url!r}") from exc
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:":
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            parsed, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs
        )

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            # Take transaction control from pysqlite so writers can BEGIN IMMEDIATE (below).
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            # Statement journals of multi-row inserts in memory, not a temp file per statement.
            cur.execute("PRAGMA temp_store=MEMORY")
            cur.close()

        @sa.event.listens_for(engine, "begin")
        def _begin(conn: sa.Connection) -> None:
            # Writers take the lock up front: a deferred transaction that reads, then writes,
            # fails with SQLITE_BUSY under WAL when another writer went first.
            readonly = conn.get_execution_options().get("llmloop_readonly", False)
            conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")

        return engine
    try:
        return sa.create_engine(parsed, pool_pre_ping=True, **kwargs)
    except (ImportError, sa.exc.NoSuchModuleError) as exc:
        raise ConfigError(
            f"no driver for {parsed.drivername}: install llmloop[postgres] for PostgreSQL"
        ) from exc


def _alembic_config(engine: sa.Engine, connection: sa.Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    # configparser treats % as interpolation: URL-encoded passwords need it doubled.
    url = engine.url.render_as_string(hide_password=False).replace("%", "%%")
    cfg.set_main_option("sqlalchemy.url", url)
    cfg.attributes["connection"] = connection
    return cfg


def head_revision(engine: sa.Engine) -> str:
    head = ScriptDirectory.from_config(_alembic_config(engine)).get_current_head()
    assert head is not None
    return head


def current_revision(engine: sa.Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    """Apply migrations up to ``revision`` (``llmloop db upgrade``)."""
    with engine.begin() as conn:
        command.upgrade(_alembic_config(engine, conn), revision)


def is_empty(engine: sa.Engine) -> bool:
    return not sa.inspect(engine).get_table_names()


@contextlib.contextmanager
def schema_lock(engine: sa.Engine) -> Iterator[None]:
    """Held while a process creates the schema, so that commands started together on a new
    store do not see each other's half-made tables: an advisory lock on PostgreSQL, a lock file
    beside a SQLite file (in-memory and other databases: none)."""
    backend = engine.url.get_backend_name()
    if backend == "postgresql":
        with engine.connect() as conn:
            conn.exec_driver_sql(f"SELECT pg_advisory_lock({_SCHEMA_LOCK_KEY})")
            try:
                yield
            finally:
                conn.exec_driver_sql(f"SELECT pg_advisory_unlock({_SCHEMA_LOCK_KEY})")
                conn.commit()
        return
    database = engine.url.database or ""
    if backend != "sqlite" or not database or database == ":memory:" or fcntl is None:
        yield
        return
    lock_path = Path(database).expanduser().with_name(Path(database).name + ".schema-lock")
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def check_schema(engine: sa.Engine, auto_create_empty: bool = True) -> None:
    """Refuse an outdated (or unknown, newer) schema; create an empty one at head if allowed.

    A database without a recorded revision may be one another process is creating this moment
    (two commands started together on a new store): it is looked at again under
    :func:`schema_lock`, which the creating process holds until its schema is complete.
    """
    try:
        current = current_revision(engine)
    except sa.exc.OperationalError as exc:
        raise ConfigError(f"cannot open the database {engine.url!r}: {exc.orig}") from exc
    head = head_revision(engine)
    if current == head:
        return
    if current is None and auto_create_empty:
        with schema_lock(engine):
            current = current_revision(engine)
            if current == head:
                return
            if current is None and is_empty(engine):
                upgrade(engine)
                return
    elif current is None and is_empty(engine):
        raise SchemaOutdatedError(
            "the database has no llmloop schema yet: run `llmloop db upgrade`"
        )
    script = ScriptDirectory.from_config(_alembic_config(engine))
    known = {rev.revision for rev in script.walk_revisions()}
    if current is not None and current not in known:
        raise SchemaOutdatedError(
            f"the database schema ({current}) is newer than this llmloop (head {head}): "
            "upgrade llmloop"
        )
    raise SchemaOutdatedError(
        f"the database schema is out of date ({current or 'none'} -> {head}): "
        "run `llmloop db upgrade`"
    )
