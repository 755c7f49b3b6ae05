"""``llmloop datasets``: datasets and their immutable versions, rows added from JSONL files.

A JSONL file is read here (one JSON object per line; blank lines skipped) with line-numbered
errors; the dataset service hashes, stores and registers the rows. Profiling, cleaning and other
file formats are the data commands' job, not this module's.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import typer

from llmloop.cli.context import get_state
from llmloop.cli.options import parse_ref
from llmloop.cli.output import print_json, print_table, say, show_record
from llmloop.core.datasets import DatasetCreate, DatasetVersionCreate
from llmloop.errors import InvalidInputError

app = typer.Typer(help="Datasets and their immutable versions.", no_args_is_help=True)

JSON_OPTION = typer.Option(False, "--json", help="Print JSON.")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The objects of a JSONL file; a malformed line is an error naming its line number."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"{path}: not UTF-8 text (byte {exc.start})")
    rows: list[dict[str, Any]] = []
    # Only CR and LF end a line (JSON strings cannot hold them raw); str.splitlines() would
    # also split inside strings holding U+2028 or U+0085, which JSON allows unescaped.
    for number, line in enumerate(re.split(r"\r\n|\r|\n", text), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"{path}:{number}: line {number} is not valid JSON: {exc.msg}")
        if not isinstance(value, dict):
            kind = type(value).__name__
            raise InvalidInputError(
                f"{path}:{number}: line {number} must be a JSON object, not {kind}"
            )
        rows.append(value)
    if not rows:
        raise InvalidInputError(f"{path}: no rows (expected one JSON object per line)")
    return rows


@app.command("list")
def list_datasets(
    ctx: typer.Context,
    limit: int = typer.Option(100, "--limit", min=1, help="At most this many."),
    offset: int = typer.Option(0, "--offset", min=0, help="Skip this many."),
    as_json: bool = JSON_OPTION,
) -> None:
    """List datasets by name."""
    items = get_state(ctx).container.datasets.list(limit=limit, offset=offset)
    if as_json:
        print_json(items)
        return
    rows = ([d.name, d.latest_version, d.description, d.created_at, d.id] for d in items)
    print_table(["name", "latest", "description", "created", "id"], rows, title="datasets")


@app.command("show")
def show_dataset(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Dataset name."),
    version: str | None = typer.Option(
        None, "--version", help="Show this version (a number or 'latest') instead."
    ),
    head: int = typer.Option(0, "--head", min=0, help="Also print the first N rows."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Show a dataset, or one of its versions with --version."""
    service = get_state(ctx).container.datasets
    if version is None and not head:
        show_record(service.get(name), as_json, title=f"dataset {name}")
        return
    found = service.get_version(name, parse_ref(version or "latest"))
    rows = service.page_rows(found, 0, head) if head else []
    if as_json:
        print_json(
            {**found.model_dump(mode="json", by_alias=True), "head": rows} if head else found
        )
        return
    show_record(found, False, title=f"dataset {name} v{found.version}")
    for row in rows:
        typer.echo(json.dumps(row, ensure_ascii=False))


@app.command("create")
def create_dataset(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="A unique name."),
    description: str = typer.Option("", "--description", "-d", help="What the data is."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Create an empty dataset."""
    state = get_state(ctx)
    spec = DatasetCreate(name=name, description=description)
    created = state.container.datasets.create(spec, state.actor())
    if as_json:
        print_json(created)
    else:
        say(f"created dataset {created.name} ({created.id})")


@app.command("versions")
def list_versions(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Dataset name."),
    as_json: bool = JSON_OPTION,
) -> None:
    """List the versions of a dataset."""
    items = get_state(ctx).container.datasets.list_versions(name)
    if as_json:
        print_json(items)
        return
    rows = (
        [v.version, v.row_count, v.shape, v.content_hash[:12], v.description, v.created_at, v.id]
        for v in items
    )
    columns = ["version", "rows", "shape", "sha256", "description", "created", "id"]
    print_table(columns, rows, title=f"versions of {name}")


@app.command("add-version")
def add_version(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Dataset name (created when missing)."),
    file: Path = typer.Option(
        ..., "--file", "-f", help="JSONL file: one JSON object per line.", dir_okay=False
    ),
    parent: int | None = typer.Option(None, "--parent", min=1, help="Version this derives from."),
    description: str = typer.Option("", "--description", "-d", help="What changed."),
    create: bool = typer.Option(
        True, "--create/--no-create", help="Create the dataset when it does not exist."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Register the rows of a JSONL file as a new immutable version."""
    rows = read_jsonl(file)
    state = get_state(ctx)
    spec = DatasetVersionCreate(rows=rows, parent_version=parent, description=description)
    created = state.container.datasets.create_version(
        name, spec, state.actor(), create_missing=create
    )
    if as_json:
        print_json(created)
    else:
        say(
            f"dataset {name}: version {created.version} ({created.row_count} rows, "
            f"{created.shape}, sha256 {created.content_hash[:12]}) id {created.id}"
        )
