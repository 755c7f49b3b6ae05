"""``llmloop audit``: the append-only audit log, filtered by entity or actor, paged by id.

Every change in the registry (create, move, protect, approve, revoke) writes one entry with the
before and after values; this command only reads them.
"""

from __future__ import annotations

import typer

from llmloop.cli.context import get_state
from llmloop.cli.output import cell, print_json, print_table


def audit_command(
    ctx: typer.Context,
    entity: str | None = typer.Option(None, "--entity", help="Only entries about this id."),
    actor: str | None = typer.Option(None, "--actor", help="Only entries by this user."),
    limit: int = typer.Option(100, "--limit", min=1, max=10_000, help="At most this many."),
    after: int = typer.Option(0, "--after", min=0, help="Only entries after this entry id."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show the audit log, oldest first (page with --after LAST_ID)."""
    entries = get_state(ctx).container.governance.audit(
        entity_id=entity, limit=limit, after_id=after, actor_name=actor
    )
    if as_json:
        print_json(entries)
        return
    rows = (
        [e.id, e.at, e.actor, e.action, f"{e.entity_type} {e.entity_id}", _change(e.after)]
        for e in entries
    )
    print_table(["id", "at", "actor", "action", "entity", "after"], rows, title="audit log")


def _change(after: dict[str, object] | None, width: int = 60) -> str:
    text = cell(after)
    return text if len(text) <= width else text[: width - 1] + "…"
