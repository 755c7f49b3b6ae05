"""``llmloop keys``: API keys for the server and gateway: create (secret shown once), list,
revoke.

Only a salted hash of a secret is stored, so the secret printed by ``create`` cannot be shown
again. Limits (``--limit rpm=60``) are the gateway policy of the key; enforcing them is the
gateway's job.
"""

from __future__ import annotations

import typer

from llmloop.cli.context import get_state
from llmloop.cli.options import parse_number_pairs
from llmloop.cli.output import print_json, print_table, say, warn
from llmloop.core.governance import ApiKeyCreate

app = typer.Typer(help="API keys: create, list, revoke.", no_args_is_help=True)

JSON_OPTION = typer.Option(False, "--json", help="Print JSON.")
SHOWN_ONCE = "this secret is shown only once: store it now (only a hash is kept)"


@app.command("create")
def create_key(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Who or what uses the key."),
    role: str = typer.Option("viewer", "--role", help="admin, editor or viewer."),
    limit: list[str] = typer.Option(
        [], "--limit", help="Policy key=number: rpm, tpm, max_concurrent, budget_usd."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Create a key and print its secret once."""
    spec = ApiKeyCreate.model_validate(
        {"name": name, "role": role, "limits": parse_number_pairs(limit, "--limit")}
    )
    state = get_state(ctx)
    created = state.container.keys.create(spec, state.actor())
    warn(SHOWN_ONCE)
    if as_json:
        print_json(created)
        return
    say(f"created key {created.id} ({created.name}, role {created.role})")
    # The bare secret on its own line, so `| tail -1` captures it.
    typer.echo(created.secret)


@app.command("list")
def list_keys(
    ctx: typer.Context,
    include_revoked: bool = typer.Option(False, "--all", help="Include revoked keys."),
    as_json: bool = JSON_OPTION,
) -> None:
    """List keys (never their secrets)."""
    items = get_state(ctx).container.keys.list(include_revoked=include_revoked)
    if as_json:
        print_json(items)
        return
    rows = ([k.id, k.name, k.role, k.prefix, k.limits, k.created_at, k.revoked_at] for k in items)
    columns = ["id", "name", "role", "prefix", "limits", "created", "revoked"]
    print_table(columns, rows, title="API keys")


@app.command("revoke")
def revoke_key(
    ctx: typer.Context,
    key_id: str = typer.Argument(..., metavar="ID", help="Key id."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Revoke a key; requests with it fail from now on."""
    state = get_state(ctx)
    revoked = state.container.keys.revoke(key_id, state.actor())
    if as_json:
        print_json(revoked)
    else:
        say(f"revoked key {revoked.id} ({revoked.name})")
