"""How the CLI prints: JSON for machines (``--json``), rich tables and key/value summaries for
people, warnings on stderr.

JSON is pydantic's ``model_dump(mode="json", by_alias=True)``, the same shape the REST API
returns. Consoles are made per call so test runners that swap ``sys.stdout`` see the output.
This module formats values; it does not decide what a command shows.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

WIDE = 160  # when stdout is not a terminal, ids must not be cut by an 80-column default


def console(stderr: bool = False) -> Console:
    """A console on the current stdout (or stderr), wide when not a terminal."""
    stream = sys.stderr if stderr else sys.stdout
    is_tty = bool(getattr(stream, "isatty", lambda: False)())
    return Console(file=stream, width=None if is_tty else WIDE, highlight=False, soft_wrap=False)


def to_data(value: Any) -> Any:
    """Pydantic models (and lists/dicts of them) as plain JSON-ready data."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    if isinstance(value, Mapping):
        return {str(k): to_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_data(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def print_json(value: Any) -> None:
    """Machine-readable output on stdout, one document."""
    sys.stdout.write(json.dumps(to_data(value), indent=2, ensure_ascii=False) + "\n")


def cell(value: Any) -> str:
    """A short human rendering of one value for a table cell."""
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, BaseModel | Mapping | list | tuple):
        data = to_data(value)
        if isinstance(data, dict):
            return ", ".join(f"{k}={cell(v)}" for k, v in data.items()) or "-"
        if isinstance(data, list):
            return ", ".join(cell(v) for v in data) or "-"
        return json.dumps(data, ensure_ascii=False)
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def print_table(
    columns: Sequence[str], rows: Iterable[Sequence[Any]], title: str | None = None
) -> None:
    """A rich table; an empty one prints a short note instead."""
    materialised = [list(r) for r in rows]
    if not materialised:
        console().print(f"(no {title or 'rows'})")
        return
    table = Table(title=title, title_justify="left")
    for name in columns:
        table.add_column(name, overflow="fold")
    for row in materialised:
        table.add_row(*(cell(v) for v in row))
    console().print(table)


def print_fields(fields: Mapping[str, Any], title: str | None = None) -> None:
    """A key/value summary of one record."""
    table = Table(title=title, title_justify="left", show_header=False, box=None)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in fields.items():
        table.add_row(key, cell(value))
    console().print(table)


def print_model(model: BaseModel, title: str | None = None, skip: Sequence[str] = ()) -> None:
    """Every field of a model as a summary (or the model as JSON when asked by the caller)."""
    data = {k: getattr(model, k) for k in type(model).model_fields if k not in skip}
    print_fields({k.rstrip("_"): v for k, v in data.items()}, title)


def show_record(model: BaseModel, as_json: bool, title: str | None = None) -> None:
    """One record: JSON when ``as_json``, else a key/value summary."""
    if as_json:
        print_json(model)
    else:
        print_model(model, title)


def say(message: str) -> None:
    """A one-line confirmation for people (stdout); never wrapped, so a long line (ids, a JSON
    summary) stays one line for ``| tail -1`` and ``| jq``."""
    console().print(message, markup=False, soft_wrap=True)


def warn(message: str) -> None:
    """A warning on stderr, so stdout stays clean for scripts."""
    console(stderr=True).print(f"[yellow]warning:[/yellow] {message}")
