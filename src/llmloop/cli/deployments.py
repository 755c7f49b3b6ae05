"""``llmloop deployments``: public model names of the gateway: list, show, apply a YAML file,
delete.

The CLI writes to the store; a running server picks the change up within its
``gateway_reload_s`` (or at once through ``POST /api/deployments/{name}/reload``). Routing,
engines and traffic are the gateway's job, not this command's.
"""

from __future__ import annotations

from pathlib import Path

import typer

from llmloop.cli.context import get_state
from llmloop.cli.output import print_json, print_table, say

app = typer.Typer(help="Gateway deployments: list, show, apply, delete.", no_args_is_help=True)

JSON_OPTION = typer.Option(False, "--json", help="Print JSON.")


@app.command("list")
def list_deployments(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """List deployments and their targets."""
    items = get_state(ctx).container.deployments.list()
    if as_json:
        print_json(items)
        return
    rows = (
        [d.name, ", ".join(f"{t.label} ({t.weight:g})" for t in d.spec.targets),
         d.spec.shadow.label if d.spec.shadow else "", len(d.spec.fallbacks), d.source]
        for d in items
    )  # fmt: skip
    print_table(["name", "targets", "shadow", "fallbacks", "source"], rows, title="Deployments")


@app.command("show")
def show_deployment(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Deployment (public model) name."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Show one deployment's full spec."""
    dep = get_state(ctx).container.deployments.get(name)
    if as_json:
        print_json(dep)
        return
    say(f"{dep.name} (source {dep.source}, by {dep.created_by or '-'})")
    typer.echo(dep.spec.model_dump_json(indent=2, exclude_defaults=True))


@app.command("apply")
def apply_deployments(
    ctx: typer.Context,
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="YAML deployments file."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Create or replace every deployment declared in FILE."""
    state = get_state(ctx)
    applied = state.container.deployments.apply_file(file, state.actor())
    if as_json:
        print_json(list(applied))
        return
    for dep in applied:
        say(f"applied deployment {dep.name}")


@app.command("delete")
def delete_deployment(
    ctx: typer.Context, name: str = typer.Argument(..., help="Deployment name.")
) -> None:
    """Delete a deployment (its traces stay)."""
    state = get_state(ctx)
    state.container.deployments.delete(name, state.actor())
    say(f"deleted deployment {name}")
