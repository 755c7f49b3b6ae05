"""``llmloop eval``: run an evaluation suite on a model version over a dataset version, gate a
candidate against a baseline, show a stored report.

The gate exits non-zero when it fails, so a CI job can run it as a check. Suites are YAML files
(see ``evaluators/suites.py``); judges and red-team probes come through the same command group.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from llmloop.cli.context import get_state
from llmloop.cli.options import split_name_ref
from llmloop.cli.output import print_json, print_table, say, warn
from llmloop.errors import ConfigError

app = typer.Typer(help="Evaluate models: suites, gates, reports.", no_args_is_help=True)
GATE_FAILED_EXIT = 11


@app.command("run")
def run_eval(
    ctx: typer.Context,
    suite: Path = typer.Argument(..., help="Suite YAML file.", exists=True, dir_okay=False),
    model: str = typer.Option(..., "--model", help="Registry model, as NAME or NAME@REF."),
    dataset: str = typer.Option(..., "--dataset", help="Dataset with the evaluation rows."),
    dataset_version: str = typer.Option("latest", "--dataset-version", help="Its version."),
    judge: str | None = typer.Option(None, "--judge", help="Judge model as NAME@REF."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Only the first N rows."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Generate answers with the model and score them; records an eval run."""
    state = get_state(ctx)
    name, ref = split_name_ref(model, "champion")
    outcome = state.container.evaluation.evaluate(
        suite,
        name,
        dataset,
        state.actor(),
        ref=ref,
        dataset_version=dataset_version,
        judge=split_name_ref(judge, "champion") if judge else None,
        limit=limit,
    )
    if as_json:
        print_json(outcome)
        return
    say(f"eval run {outcome.run_id}: {outcome.suite} on {outcome.model}")
    print_table(["metric", "value"], sorted(outcome.metrics.items()), title="metrics")
    for key, error in outcome.evaluator_errors.items():
        say(f"evaluator {key} failed: {error}")
    if outcome.failed_samples:
        say(f"{outcome.failed_samples} generations failed and were left out")


def describe_rule(item: dict[str, Any]) -> str:
    """One line per gate rule: its verdict, the rule and why (values, or the reason)."""
    mark = {"passed": "PASS", "skipped": "SKIP"}.get(str(item.get("status")), "FAIL")
    values = [
        f"{name} {item[name]:.4g}"
        for name in ("candidate", "threshold")
        if isinstance(item.get(name), int | float)
    ]
    detail = item.get("reason") or ", ".join(values)
    return f"{mark}  {item.get('rule', '')}" + (f"  ({detail})" if detail else "")


@app.command("gate")
def gate(
    ctx: typer.Context,
    candidate: str = typer.Option(..., "--candidate", help="Eval run id of the candidate."),
    baseline: str | None = typer.Option(None, "--baseline", help="Eval run id to compare to."),
    rule: list[str] = typer.Option(
        ..., "--rule", help="A rule such as 'rougeL >= baseline - 0.01' (repeatable)."
    ),
    missing_baseline: str = typer.Option(
        "skip",
        "--missing-baseline",
        help="A rule comparing to the baseline when no --baseline is given: skip (a first "
        "run) or fail (a CI gate that must compare).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Check a candidate against rules; exits 11 when the gate fails."""
    state = get_state(ctx)
    if missing_baseline not in ("skip", "fail"):
        raise ConfigError(f"--missing-baseline must be skip or fail, not '{missing_baseline}'")
    outcome = state.container.evaluation.gate(
        rule, candidate, baseline, state.actor(), "skip" if missing_baseline == "skip" else "fail"
    )
    if as_json:
        print_json(outcome)
    else:
        for item in outcome.result.get("rules", []):
            say(describe_rule(item))
        say(f"gate {'passed' if outcome.passed else 'FAILED'} (run {outcome.run_id})")
    skipped = [r for r in outcome.result.get("rules", []) if r.get("status") == "skipped"]
    if skipped and baseline is None:
        warn(f"{len(skipped)} rule(s) compare to a baseline and no --baseline was given: "
             "skipped (--missing-baseline fail makes them fail)")  # fmt: skip
    if not outcome.passed:
        raise typer.Exit(GATE_FAILED_EXIT)


@app.command("report")
def report(
    ctx: typer.Context,
    run_id: str = typer.Argument(..., metavar="RUN_ID", help="An eval run id."),
) -> None:
    """Print the full stored report of an eval run as JSON."""
    print_json(get_state(ctx).container.evaluation.report(run_id))


@app.command("redteam")
def redteam(
    ctx: typer.Context,
    model: str = typer.Option(..., "--model", help="Registry model, as NAME or NAME@REF."),
    category: list[str] = typer.Option([], "--category", help="Only these probe categories."),
    guards: bool = typer.Option(False, "--guards", help="Put the default guard set in front."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Run the built-in red-team probes; results grouped by OWASP Top 10 for LLM Apps (2025)."""
    state = get_state(ctx)
    name, ref = split_name_ref(model, "champion")
    report = state.container.evaluation.redteam(
        name, state.actor(), ref=ref, categories=category or None, with_guards=guards
    )
    if as_json:
        print_json(report)
        return
    rows = [
        [
            key,
            item["title"],
            item["total"],
            item["compromised"],
            f"{item['attack_success_rate']:.0%}",
        ]
        for key, item in report["by_owasp"].items()
    ]
    print_table(["owasp", "risk", "probes", "compromised", "success"], rows, title="red team")
    say(f"attack success rate {report['attack_success_rate']:.0%} (run {report['run_id']})")
    if report["errors"]:  # left out of the rates and the table: say so, or 0% reads as safe
        first = next(r["error"] for r in report["results"] if r["error"])
        warn(
            f"{report['errors']} of {len(report['results'])} probes got no answer and are left "
            f"out of the rates; the first: {first}"
        )
