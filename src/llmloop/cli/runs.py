"""``llmloop runs``: tracked work with params, inputs, metric series and a final status.

Inputs (``--input ID[:role]``) become lineage edges into the run. Metrics are logged as
``key=value`` pairs at a step; a finished run takes no more. Training and evaluation commands
create their own runs; this module is the manual, scriptable path.
"""

from __future__ import annotations

from typing import get_args

import typer

from llmloop.cli.context import get_state
from llmloop.cli.options import parse_input, parse_number_pairs, parse_pairs
from llmloop.cli.output import print_json, print_table, say, show_record
from llmloop.core.runs import MetricPoint, RunCreate, RunInput, RunKind
from llmloop.errors import NotFoundError

app = typer.Typer(help="Runs: params, inputs, metrics and status.", no_args_is_help=True)

JSON_OPTION = typer.Option(False, "--json", help="Print JSON.")
KINDS = ", ".join(get_args(RunKind))


@app.command("list")
def list_runs(
    ctx: typer.Context,
    kind: str | None = typer.Option(None, "--kind", help=f"Only this kind ({KINDS})."),
    status: str | None = typer.Option(
        None, "--status", help="Only this status (running, finished, failed, killed)."
    ),
    parent: str | None = typer.Option(None, "--parent", help="Only children of this run."),
    limit: int = typer.Option(100, "--limit", min=1, help="At most this many."),
    as_json: bool = JSON_OPTION,
) -> None:
    """List runs, newest first."""
    items = get_state(ctx).container.runs.list(
        kind=kind, status=status, parent_id=parent, limit=limit
    )
    if as_json:
        print_json(items)
        return
    rows = ([r.id, r.kind, r.name, r.status, r.latest_metrics, r.created_at] for r in items)
    print_table(["id", "kind", "name", "status", "metrics", "created"], rows, title="runs")


@app.command("show")
def show_run(
    ctx: typer.Context,
    run_id: str = typer.Argument(..., metavar="ID", help="Run id."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Show a run: params, inputs, latest metrics, artifacts."""
    run = get_state(ctx).container.runs.get(run_id)
    show_record(run, as_json, title=f"run {run.id}")


@app.command("create")
def create_run(
    ctx: typer.Context,
    kind: str = typer.Option("other", "--kind", help=f"One of: {KINDS}."),
    name: str = typer.Option("", "--name", "-n", help="A human name."),
    param: list[str] = typer.Option([], "--param", "-p", help="Parameter key=value."),
    input_: list[str] = typer.Option(
        [], "--input", "-i", help="Upstream version id, optionally ID:role (repeatable)."
    ),
    tag: list[str] = typer.Option([], "--tag", help="Tag key=value."),
    parent: str | None = typer.Option(None, "--parent", help="Parent run id."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Start a run (status 'running'); prints its id."""
    inputs = [RunInput(id=ident, role=role) for ident, role in map(parse_input, input_)]
    tags = {k: str(v) for k, v in parse_pairs(tag, "--tag").items()}
    spec = RunCreate.model_validate(
        {
            "kind": kind,
            "name": name,
            "params": parse_pairs(param, "--param"),
            "inputs": inputs,
            "tags": tags,
            "parent_id": parent,
        }
    )
    state = get_state(ctx)
    run = state.container.runs.create(spec, state.actor())
    if as_json:
        print_json(run)
    else:
        say(run.id)


@app.command("log")
def log_metrics(
    ctx: typer.Context,
    run_id: str = typer.Argument(..., metavar="ID", help="Run id."),
    metrics: list[str] = typer.Argument(..., metavar="KEY=VALUE...", help="Metric values."),
    step: int = typer.Option(0, "--step", min=0, help="Step of these values."),
) -> None:
    """Log metric values at a step: llmloop runs log ID loss=0.4 acc=0.9 --step 10."""
    values = parse_number_pairs(metrics, "metric")
    points = [MetricPoint(key=k, value=v, step=step) for k, v in values.items()]
    state = get_state(ctx)
    count = state.container.runs.log_metrics(run_id, points, state.actor())
    say(f"logged {count} metric{'s' if count != 1 else ''} at step {step}")


@app.command("finish")
def finish_run(
    ctx: typer.Context,
    run_id: str = typer.Argument(..., metavar="ID", help="Run id."),
    status: str = typer.Option("finished", "--status", help="finished, failed or killed."),
    as_json: bool = JSON_OPTION,
) -> None:
    """End a run with a final status."""
    state = get_state(ctx)
    run = state.container.runs.finish(run_id, status, state.actor())
    if as_json:
        print_json(run)
    else:
        say(f"run {run.id} is {run.status}")


@app.command("metrics")
def show_metrics(
    ctx: typer.Context,
    run_id: str = typer.Argument(..., metavar="ID", help="Run id."),
    key: str | None = typer.Option(None, "--key", "-k", help="Only this metric."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Show the metric series of a run (every step)."""
    series = get_state(ctx).container.runs.metric_series(run_id, key)
    if key is not None and key not in series:
        raise NotFoundError(f"run '{run_id}' has no metric '{key}'")
    if as_json:
        print_json(series)
        return
    rows = ([name, p["step"], p["value"], p["at"]] for name, pts in series.items() for p in pts)
    print_table(["key", "step", "value", "at"], rows, title=f"metrics of {run_id}")
