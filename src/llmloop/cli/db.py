"""``llmloop db``: the database schema, upgraded on request and reported.

Every other command opens the store with a schema check that refuses an outdated schema;
``db upgrade`` applies the Alembic migrations shipped in the package (``services/schema.py``).
It does not create or drop data of its own.
"""

from __future__ import annotations

import typer

from llmloop.cli.context import get_state
from llmloop.cli.output import print_fields, print_json, say

app = typer.Typer(help="Database schema: upgrade it, show its revision.", no_args_is_help=True)


@app.command("upgrade")
def upgrade_db(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Apply the migrations up to the newest schema (safe to run again)."""
    from llmloop.services.schema import upgrade_schema

    after = upgrade_schema(get_state(ctx).settings.database_url)
    before = after["previous"]
    if as_json:
        print_json(after)
    elif before == after["current"]:
        say(f"already at the newest schema ({after['current']})")
    else:
        say(f"upgraded {after['database_url']}: {before or 'empty'} -> {after['current']}")


@app.command("current")
def current_db(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show the database's schema revision and the newest one this llmloop knows."""
    from llmloop.services.schema import schema_state

    state = schema_state(get_state(ctx).settings.database_url)
    if as_json:
        print_json(state)
        return
    print_fields(state, title="database schema")
