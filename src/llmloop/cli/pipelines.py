"""``llmloop pipeline``: validate and run declarative pipelines (CI/CD for models).

A run prints each step with its status (ran, cached, failed, skipped) and exits non-zero when a
step failed, so a CI job can run a pipeline as a check.
"""

from __future__ import annotations

from pathlib import Path

import typer

from llmloop.cli.context import get_state
from llmloop.cli.output import print_json, print_table, say

app = typer.Typer(help="Declarative pipelines: validate and run.", no_args_is_help=True)
PIPELINE_FAILED_EXIT = 12


def _params(pairs: list[str]) -> dict[str, object]:
    from llmloop.cli.train import parse_settings

    return parse_settings(pairs, None)


@app.command("validate")
def validate(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="Pipeline YAML file."),
    param: list[str] = typer.Option([], "--param", help="Override a parameter as key=value."),
) -> None:
    """Check the file (step kinds, their inputs, parameters, order) and print the steps in
    execution order."""
    from llmloop.services.pipelines import load_pipeline

    spec = load_pipeline(file)
    steps = get_state(ctx).container.pipelines.check(spec, _params(param))
    for index, step in enumerate(steps, start=1):
        say(f"{index}. {step.id} ({step.uses})")


@app.command("run")
def run(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="Pipeline YAML file."),
    param: list[str] = typer.Option([], "--param", help="Override a parameter as key=value."),
    trigger: str = typer.Option("manual", "--trigger", help="What started this run."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Run a pipeline; unchanged steps are skipped from the cache and say so."""
    from llmloop.services.pipelines import load_pipeline

    state = get_state(ctx)
    spec = load_pipeline(file)
    report = state.container.pipelines.run(spec, state.actor(), _params(param), trigger=trigger)
    if as_json:
        print_json(report.to_dict())
    else:
        rows = [
            [s.id, s.uses, s.status, s.run_id or "", f"{s.seconds:.1f}s", s.error or ""]
            for s in report.steps
        ]
        print_table(["step", "uses", "status", "run", "time", "error"], rows, title=spec.name)
        say(f"pipeline {report.status} (run {report.run_id})")
    if report.status != "finished":
        raise typer.Exit(PIPELINE_FAILED_EXIT)


@app.command("tick")
def tick(
    ctx: typer.Context,
    folder: Path = typer.Argument(
        ..., help="Folder of pipeline YAML files.", exists=True, file_okay=False
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Check every pipeline's triggers once and run the due ones (what the server does)."""
    state = get_state(ctx)
    svc = state.container.triggers
    reports = svc.tick(svc.load_dir(folder), state.actor())
    if as_json:
        print_json([r.to_dict() for r in reports])
        return
    if not reports:
        say("no pipeline was due")
    for report in reports:
        say(f"{report.pipeline}: {report.status} (run {report.run_id})")
