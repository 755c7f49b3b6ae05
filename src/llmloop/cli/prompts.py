"""``llmloop prompts``: prompt templates, their immutable versions, labels, render and diff.

Labels (``production``) are movable names over versions; a protected label moves only through
an approval (``llmloop approvals``). Rendering and diffing are the prompt service's; this module
parses options and prints.
"""

from __future__ import annotations

from pathlib import Path

import typer

from llmloop.cli.context import get_state
from llmloop.cli.options import parse_pairs, parse_ref, split_list
from llmloop.cli.output import console, print_json, print_table, say, show_record
from llmloop.core.prompts import PromptCreate, PromptVersionCreate
from llmloop.errors import InvalidInputError

app = typer.Typer(help="Prompt templates, versions and labels.", no_args_is_help=True)

JSON_OPTION = typer.Option(False, "--json", help="Print JSON.")


@app.command("list")
def list_prompts(
    ctx: typer.Context,
    limit: int = typer.Option(100, "--limit", min=1, help="At most this many."),
    offset: int = typer.Option(0, "--offset", min=0, help="Skip this many."),
    as_json: bool = JSON_OPTION,
) -> None:
    """List prompts by name."""
    items = get_state(ctx).container.prompts.list(limit=limit, offset=offset)
    if as_json:
        print_json(items)
        return
    rows = ([p.name, p.latest_version, p.labels, p.description, p.id] for p in items)
    print_table(["name", "latest", "labels", "description", "id"], rows, title="prompts")


@app.command("show")
def show_prompt(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Prompt name."),
    ref: str | None = typer.Option(
        None, "--ref", help="Show this version: a number, a label or 'latest'."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Show a prompt, or one of its versions (with its template) with --ref."""
    service = get_state(ctx).container.prompts
    if ref is None:
        show_record(service.get(name), as_json, title=f"prompt {name}")
        return
    version = service.get_version(name, parse_ref(ref))
    show_record(version, as_json, title=f"prompt {name} v{version.version}")


@app.command("create")
def create_prompt(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="A unique name."),
    description: str = typer.Option("", "--description", "-d", help="What it is for."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Create a prompt with no versions yet."""
    state = get_state(ctx)
    created = state.container.prompts.create(
        PromptCreate(name=name, description=description), state.actor()
    )
    if as_json:
        print_json(created)
    else:
        say(f"created prompt {created.name} ({created.id})")


@app.command("add-version")
def add_version(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Prompt name (created when missing)."),
    template: str | None = typer.Option(None, "--template", "-t", help="Jinja2 template text."),
    template_file: Path | None = typer.Option(
        None, "--template-file", "-f", help="Read the template from this file.", dir_okay=False
    ),
    param: list[str] = typer.Option([], "--param", "-p", help="Model parameter key=value."),
    variables: str | None = typer.Option(
        None, "--variables", help="Declared variables, comma separated (default: inferred)."
    ),
    message: str = typer.Option("", "--message", "-m", help="What changed."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Add an immutable version from --template or --template-file."""
    if (template is None) == (template_file is None):
        raise InvalidInputError("give exactly one of --template and --template-file")
    text = template if template is not None else Path(str(template_file)).read_text("utf-8")
    spec = PromptVersionCreate(
        template=text,
        variables=split_list(variables),
        params=parse_pairs(param, "--param"),
        message=message,
    )
    state = get_state(ctx)
    created = state.container.prompts.create_version(name, spec, state.actor())
    if as_json:
        print_json(created)
    else:
        say(f"prompt {name}: version {created.version} id {created.id}")


@app.command("versions")
def list_versions(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Prompt name."),
    as_json: bool = JSON_OPTION,
) -> None:
    """List the versions of a prompt."""
    service = get_state(ctx).container.prompts
    items = service.list_versions(name)
    if as_json:
        print_json(items)
        return
    labels: dict[int, list[str]] = {}
    for label, number in service.get(name).labels.items():
        labels.setdefault(number, []).append(label)
    rows = (
        [v.version, labels.get(v.version, []), v.variables, v.message, v.created_at, v.id]
        for v in items
    )
    columns = ["version", "labels", "variables", "message", "created", "id"]
    print_table(columns, rows, title=f"versions of {name}")


@app.command("render")
def render_prompt(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Prompt name."),
    var: list[str] = typer.Option([], "--var", "-v", help="Template variable key=value."),
    ref: str = typer.Option("production", "--ref", help="Version, label or 'latest'."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Render a version with variables (default: the 'production' label)."""
    service = get_state(ctx).container.prompts
    rendered = service.render(name, parse_pairs(var, "--var"), parse_ref(ref))
    if as_json:
        print_json(rendered)
    else:
        typer.echo(rendered.text)


@app.command("diff")
def diff_prompt(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Prompt name."),
    a: str = typer.Argument(..., help="From: version, label or 'latest'."),
    b: str = typer.Argument(..., help="To: version, label or 'latest'."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Show what changed between two versions: template, params, variables."""
    diff = get_state(ctx).container.prompts.diff(name, parse_ref(a), parse_ref(b))
    if as_json:
        print_json(diff)
        return
    out = console()
    for line in str(diff["template_diff"]).splitlines():
        style = "green" if line.startswith("+") else "red" if line.startswith("-") else None
        out.print(line, style=style, markup=False)
    if not diff["template_diff"]:
        out.print("(template unchanged)")
    for key, change in dict(diff["params_changed"]).items():
        out.print(f"param {key}: {change['from']!r} -> {change['to']!r}", markup=False)
    for label in ("variables_added", "variables_removed"):
        if diff[label]:
            out.print(f"{label.replace('_', ' ')}: {', '.join(diff[label])}", markup=False)


@app.command("label")
def label_prompt(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Prompt name."),
    label: str = typer.Argument(..., help="Label, e.g. production."),
    version: int = typer.Argument(..., min=1, help="Version number to point it at."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Point a label at a version (a protected label needs an approval)."""
    state = get_state(ctx)
    prompt = state.container.prompts.set_label(name, label, version, state.actor())
    if as_json:
        print_json(prompt)
    else:
        say(f"prompt {name}: label {label} -> version {version}")


@app.command("protect")
def protect_label(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Prompt name."),
    label: str = typer.Argument(..., help="Label to protect."),
    off: bool = typer.Option(False, "--off", help="Lift the protection instead."),
) -> None:
    """Protect a label: from now on it moves only through an approved request."""
    from llmloop.services.pointers import PROMPT_LABEL

    state = get_state(ctx)
    state.container.governance.protect(PROMPT_LABEL, name, label, not off, state.actor())
    say(f"prompt {name}: label {label} is {'no longer ' if off else ''}protected")
