"""The database schema as a use case: report its revision and upgrade it.

This is the one place that opens the store without the schema check (every other path refuses
an outdated schema); it applies the Alembic migrations shipped in the package.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from llmloop.config import redact_url
from llmloop.errors import ConfigError
from llmloop.store import db as schema
from llmloop.store.registry import Store


def _open_unchecked(url: str) -> Store:
    return Store(url, check=False)


def _unreachable(exc: Exception, url: str) -> ConfigError:
    reason = getattr(exc, "orig", None) or exc
    return ConfigError(f"cannot open the database {redact_url(url)}: {reason}")


def _state(store: Store) -> dict[str, Any]:
    current = schema.current_revision(store.engine)
    head = schema.head_revision(store.engine)
    if current == head:
        status = "up to date"
    elif current is None and schema.is_empty(store.engine):
        status = "empty: run `llmloop db upgrade`"
    else:
        status = "out of date: run `llmloop db upgrade`"
    return {
        "database_url": redact_url(store.url),
        "current": current,
        "head": head,
        "up_to_date": current == head,
        "status": status,
    }


def schema_state(url: str) -> dict[str, Any]:
    """Current and head revisions of the database at ``url`` and what they mean."""
    store = _open_unchecked(url)
    try:
        return _state(store)
    except sa.exc.OperationalError as exc:
        raise _unreachable(exc, url) from exc
    finally:
        store.dispose()


def upgrade_schema(url: str) -> dict[str, Any]:
    """Apply every migration up to the newest schema (safe to run again)."""
    store = _open_unchecked(url)
    try:
        with schema.schema_lock(store.engine):  # not while another process creates it
            before = schema.current_revision(store.engine)
            schema.upgrade(store.engine)
        return {**_state(store), "previous": before}
    except sa.exc.OperationalError as exc:
        raise _unreachable(exc, url) from exc
    finally:
        store.dispose()
