"""``llmloop db``: the database schema, upgraded on request and reported.

Every other command opens the store with a schema check that refuses an outdated schema;
``db upgrade`` is the one place that opens it without the check and applies the Alembic
migrations shipped in the package. It does not create or drop data of its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from llmloop.cli.context import get_state
from llmloop.cli.output import print_fields, print_json, say
from llmloop.config import redact_url
from llmloop.errors import ConfigError

if TYPE_CHECKING:
    from llmloop.store.registry import Store

app = typer.Typer(help="Database schema: upgrade it, show its revision.", no_args_is_help=True)


def _open_unchecked(url: str) -> Store:
    # Imported here: the store pulls SQLAlchemy and Alembic, which `--help` does not need.
    from llmloop.store.registry import Store

    return Store(url, check=False)


def _unreachable(exc: Exception, url: str) -> ConfigError:
    reason = getattr(exc, "orig", None) or exc
    return ConfigError(f"cannot open the database {redact_url(url)}: {reason}")


def schema_state(store: Store) -> dict[str, Any]:
    """Current and head revisions and what they mean."""
    from llmloop.store import db as schema

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


@app.command("upgrade")
def upgrade_db(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Apply the migrations up to the newest schema (safe to run again)."""
    from llmloop.store import db as schema

    import sqlalchemy as sa

    store = _open_unchecked(get_state(ctx).settings.database_url)
    try:
        before = schema.current_revision(store.engine)
        schema.upgrade(store.engine)
        after = schema_state(store)
    except sa.exc.OperationalError as exc:
        raise _unreachable(exc, store.url) from exc
    finally:
        store.dispose()
    if as_json:
        print_json({**after, "previous": before})
    elif before == after["current"]:
        say(f"already at the newest schema ({after['current']})")
    else:
        say(f"upgraded the schema: {before or 'empty'} -> {after['current']}")


@app.command("current")
def current_db(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show the schema revision of the database and the one this llmloop expects."""
    import sqlalchemy as sa

    store = _open_unchecked(get_state(ctx).settings.database_url)
    try:
        state = schema_state(store)
    except sa.exc.OperationalError as exc:
        raise _unreachable(exc, store.url) from exc
    finally:
        store.dispose()
    if as_json:
        print_json(state)
    else:
        print_fields(state, title="database schema")
