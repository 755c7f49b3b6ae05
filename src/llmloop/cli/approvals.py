"""``llmloop approvals``: requests to move a protected prompt label or model alias.

One person requests, another admin approves or rejects (four eyes, unless the
``allow_self_approval`` setting says otherwise); approving applies the move at once. Locally
everyone is the same OS user, so ``--as NAME`` (here or as a global option) acts as someone else.
"""

from __future__ import annotations

import typer

from llmloop.cli.context import get_state
from llmloop.cli.output import print_json, print_table, say, show_record
from llmloop.core.governance import ApprovalCreate

app = typer.Typer(help="Approvals of protected label and alias moves.", no_args_is_help=True)

JSON_OPTION = typer.Option(False, "--json", help="Print JSON.")
AS_OPTION = typer.Option(None, "--as", help="Act as this local user.")


@app.command("request")
def request_approval(
    ctx: typer.Context,
    kind: str = typer.Option(..., "--kind", help="model_alias or prompt_label."),
    name: str = typer.Option(..., "--name", help="Model or prompt name."),
    label: str = typer.Option(..., "--label", help="The protected alias or label."),
    version: int = typer.Option(..., "--version", help="Version to move it to."),
    comment: str = typer.Option("", "--comment", "-c", help="Why."),
    as_user: str | None = AS_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Ask to move a protected label or alias; prints the approval id."""
    spec = ApprovalCreate.model_validate(
        {"kind": kind, "name": name, "label": label, "version": version, "comment": comment}
    )
    state = get_state(ctx)
    approval = state.container.governance.request(spec, state.actor(as_user))
    if as_json:
        print_json(approval)
    else:
        say(approval.id)


@app.command("list")
def list_approvals(
    ctx: typer.Context,
    status: str | None = typer.Option(
        None, "--status", help="Only this status (pending, approved, rejected)."
    ),
    limit: int = typer.Option(100, "--limit", min=1, help="At most this many."),
    as_json: bool = JSON_OPTION,
) -> None:
    """List approval requests, newest first."""
    items = get_state(ctx).container.governance.list_approvals(status=status, limit=limit)
    if as_json:
        print_json(items)
        return
    rows = (
        [a.id, a.status, a.kind, f"{a.name}:{a.label} -> v{a.version}", a.requested_by,
         a.decided_by, a.created_at]
        for a in items
    )  # fmt: skip
    columns = ["id", "status", "kind", "move", "requested by", "decided by", "created"]
    print_table(columns, rows, title="approvals")


@app.command("show")
def show_approval(
    ctx: typer.Context,
    approval_id: str = typer.Argument(..., metavar="ID", help="Approval id."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Show one approval request."""
    approval = get_state(ctx).container.governance.get_approval(approval_id)
    show_record(approval, as_json, title=f"approval {approval.id}")


def _decide(
    ctx: typer.Context, approval_id: str, approve: bool, comment: str, as_user: str | None
) -> None:
    state = get_state(ctx)
    decided = state.container.governance.decide(
        approval_id, approve, state.actor(as_user), comment=comment
    )
    say(
        f"approval {decided.id} {decided.status} by {decided.decided_by}: "
        f"{decided.name}:{decided.label} -> v{decided.version}" + (" (applied)" if approve else "")
    )


@app.command("approve")
def approve(
    ctx: typer.Context,
    approval_id: str = typer.Argument(..., metavar="ID", help="Approval id."),
    comment: str = typer.Option("", "--comment", "-c", help="Why."),
    as_user: str | None = AS_OPTION,
) -> None:
    """Approve a request (not your own) and apply the move."""
    _decide(ctx, approval_id, True, comment, as_user)


@app.command("reject")
def reject(
    ctx: typer.Context,
    approval_id: str = typer.Argument(..., metavar="ID", help="Approval id."),
    comment: str = typer.Option("", "--comment", "-c", help="Why."),
    as_user: str | None = AS_OPTION,
) -> None:
    """Reject a request; nothing moves."""
    _decide(ctx, approval_id, False, comment, as_user)
