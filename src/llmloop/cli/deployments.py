"""``llmloop deployments``: public model names of the gateway: list, show, apply a YAML file,
delete.

The CLI writes to the store; a running server picks the change up within its
``gateway_reload_s`` (or at once through ``POST /api/deployments/{name}/reload``). ``apply``
checks every deployment of the file first (targets resolve, engines and their options, guards,
cache) and stores none if one is wrong; an API key variable (``api_key_env``) not set in this
shell is a warning here (the server's environment may have it) and an error for ``llmloop
serve``. Routing, engines and traffic are the gateway's job, not this command's.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer

from llmloop.cli.context import CliState, get_state
from llmloop.cli.output import print_json, print_table, say, warn
from llmloop.core.deployments import DeploymentSpec
from llmloop.errors import ConfigError, LlmloopError

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
    """Create or replace every deployment declared in FILE (checked first; none stored if one is
    wrong)."""
    state = get_state(ctx)
    specs = check_deployments_file(state, file, env_required=False)
    if not specs:  # an empty file would apply nothing and say nothing
        raise ConfigError(f"{file}: no deployments in the file (write name: and targets:)")
    applied = state.container.deployments.apply_many(specs, state.actor(), source="file")
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


def check_deployments_file(
    state: CliState, path: str | Path, env_required: bool
) -> list[DeploymentSpec]:
    """The deployments of ``path``, each checked; ConfigError naming the deployment and field.

    An ``api_key_env`` variable missing from this process's environment is an error when
    ``env_required`` (``llmloop serve``: this process is the server), else a warning."""
    from llmloop.services.deployments import read_deployments_file
    from llmloop.services.gateway.wiring import build_checker

    specs = read_deployments_file(path)
    checker = build_checker(state.container)
    told: set[str] = set()
    for i, spec in enumerate(specs):
        where = f"{path}: deployment #{i + 1} ({spec.name})"
        try:
            resolved = checker.check(spec)
        except LlmloopError as exc:
            raise ConfigError(f"{where}: {exc.detail}") from None
        for res in resolved:
            var = res.engine.options.get("api_key_env")
            if isinstance(var, str) and var and var not in told and not os.environ.get(var):
                told.add(var)
                message = f"{where}: environment variable '{var}' (api_key_env) is not set"
                if env_required:
                    raise ConfigError(message)
                warn(message + " here; the server that serves it needs it")
    return specs
