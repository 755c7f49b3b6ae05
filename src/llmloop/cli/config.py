"""``llmloop config``: what each setting is, its effective value and where that came from.

Sources are ``flag``, ``env LLMLOOP_*``, ``file <path>`` (``LLMLOOP_CONFIG`` or ./llmloop.toml)
or ``default``; passwords in URLs are redacted by :func:`llmloop.config.describe_settings`.
This command reads settings; it never writes a config file.
"""

from __future__ import annotations

import typer

from llmloop.cli.context import get_state
from llmloop.cli.output import print_json, print_table
from llmloop.config import describe_settings

app = typer.Typer(help="Show the effective settings.", no_args_is_help=True)


@app.command("show")
def show_config(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Add each setting's description."),
) -> None:
    """Every setting with its effective value and source (flag, env, file or default)."""
    rows = describe_settings(get_state(ctx).overrides)
    if as_json:
        print_json(rows)
        return
    columns = ["name", "value", "source"] + (["env", "description"] if verbose else [])
    print_table(columns, ([row[c] for c in columns] for row in rows), title="settings")


@app.command("docs")
def config_docs(
    engines: bool = typer.Option(
        False, "--engines", help="The engine options reference (docs/engines.md) instead."
    ),
) -> None:
    """Print the settings reference (docs/settings.md) generated from the code."""
    if engines:
        from llmloop.services.engine_options import engine_options_reference

        typer.echo(engine_options_reference(), nl=False)
        return
    from llmloop.config import settings_reference

    typer.echo(settings_reference(), nl=False)
