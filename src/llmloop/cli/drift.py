"""``llmloop drift``: compare a reference window of traces (or a dataset version's rows) with a
current window, store the results, and show their history."""

from __future__ import annotations

import typer

from llmloop.cli.context import get_state
from llmloop.cli.output import print_json, print_table
from llmloop.core.monitoring import DriftRunCreate, Window, parse_since

app = typer.Typer(help="Drift of inputs, outputs and rates between two windows.",
                  no_args_is_help=True)  # fmt: skip
JSON_OPTION = typer.Option(False, "--json", help="Print JSON.")


@app.command("run")
def run(
    ctx: typer.Context,
    deployment: str = typer.Option(..., "--deployment", help="The deployment to check."),
    reference_since: str | None = typer.Option(None, "--reference-since", help="1d or ISO."),
    reference_until: str | None = typer.Option(None, "--reference-until", help="1h or ISO."),
    reference_dataset: str | None = typer.Option(
        None, "--reference-dataset", help="Use a dataset version's rows as the reference."
    ),
    reference_version: int | None = typer.Option(None, "--reference-version", help="Version."),
    current_since: str = typer.Option("1h", "--current-since", help="1h or ISO."),
    current_until: str | None = typer.Option(None, "--current-until", help="ISO (default now)."),
    model_version: str | None = typer.Option(None, "--model-version", help="Only this version."),
    alpha: float = typer.Option(0.05, "--alpha", help="Significance level."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Run every drift test now and store the results."""
    reference = Window(
        since=parse_since(reference_since) if reference_since else None,
        until=parse_since(reference_until) if reference_until else None,
        dataset=reference_dataset, version=reference_version,
    )  # fmt: skip
    current = Window(since=parse_since(current_since),
                     until=parse_since(current_until) if current_until else None)  # fmt: skip
    spec = DriftRunCreate(deployment=deployment, model_version_id=model_version,
                          reference=reference, current=current, alpha=alpha)  # fmt: skip
    state = get_state(ctx)
    report = state.container.drift.run(spec, state.actor())
    if as_json:
        print_json(report)
        return
    rows = ([r.metric, r.test, r.statistic, r.p_value, "DRIFT" if r.drifted else "ok",
             r.reference.get("n"), r.current.get("n")] for r in report.results)  # fmt: skip
    print_table(["metric", "test", "statistic", "p", "verdict", "ref n", "cur n"], rows,
                title=f"drift of {deployment}")  # fmt: skip
    for metric, why in report.skipped.items():
        typer.echo(f"skipped {metric}: {why}")


@app.command("history")
def history(
    ctx: typer.Context,
    deployment: str | None = typer.Option(None, "--deployment", help="Only this deployment."),
    metric: str | None = typer.Option(None, "--metric", help="Only this metric."),
    since: str | None = typer.Option(None, "--since", help="1d or ISO."),
    limit: int = typer.Option(500, "--limit", min=1, help="At most this many."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Stored drift results, oldest first."""
    found = get_state(ctx).container.drift.history(
        deployment, metric, parse_since(since) if since else None, limit
    )
    if as_json:
        print_json(found)
        return
    rows = ([r.at, r.deployment, r.metric, r.statistic, r.p_value,
             "DRIFT" if r.drifted else "ok"] for r in found)  # fmt: skip
    print_table(["at", "deployment", "metric", "statistic", "p", "verdict"], rows, "drift results")
