"""``llmloop alerts``: rules on monitored metrics and drift results; list, delete, events, and
evaluate now (one evaluation moves every rule and sends its notifications)."""

from __future__ import annotations

import asyncio

import typer

from llmloop.cli.context import get_state
from llmloop.cli.output import print_json, print_table, say
from llmloop.core.alerts import AlertRuleCreate
from llmloop.core.monitoring import METRICS, parse_duration

app = typer.Typer(help="Alert rules, their events, and evaluation.", no_args_is_help=True)
JSON_OPTION = typer.Option(False, "--json", help="Print JSON.")


@app.command("create")
def create(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Rule name."),
    metric: str = typer.Option(..., "--metric", help=f"{', '.join(METRICS)} or drift.<metric>."),
    comparison: str = typer.Option(">", "--op", help="One of >, >=, <, <=."),
    threshold: float = typer.Option(..., "--threshold", help="The value to compare with."),
    window: str = typer.Option("5m", "--window", help="Trailing window, e.g. 5m."),
    for_: str = typer.Option("0s", "--for", help="How long it must hold before firing."),
    deployment: str | None = typer.Option(None, "--deployment", help="Only this deployment."),
    webhook: str | None = typer.Option(None, "--webhook", help="URL to POST JSON notices to."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Create an alert rule."""
    for_s = 0.0 if for_.strip() in ("0", "0s") else parse_duration(for_)
    spec = AlertRuleCreate.model_validate({
        "name": name, "metric": metric, "comparison": comparison, "threshold": threshold,
        "window_s": parse_duration(window), "for_s": for_s, "deployment": deployment,
        "webhook_url": webhook,
    })  # fmt: skip
    state = get_state(ctx)
    rule = state.container.alerts.create(spec, state.actor())
    if as_json:
        print_json(rule)
    else:
        say(rule.id)


@app.command("list")
def list_rules(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """Rules with their state and last value."""
    rules = get_state(ctx).container.alerts.list()
    if as_json:
        print_json(rules)
        return
    rows = ([r.name, f"{r.spec.metric} {r.spec.comparison} {r.spec.threshold:g}",
             r.spec.deployment, r.state, r.last_value, r.changed_at] for r in rules)  # fmt: skip
    print_table(["name", "rule", "deployment", "state", "last value", "changed"], rows, "alerts")


@app.command("delete")
def delete(ctx: typer.Context, name: str = typer.Argument(..., help="Rule name.")) -> None:
    """Delete a rule and its events."""
    state = get_state(ctx)
    state.container.alerts.delete(name, state.actor())
    say(f"deleted {name}")


@app.command("events")
def events(
    ctx: typer.Context,
    rule: str | None = typer.Option(None, "--rule", help="Only this rule."),
    limit: int = typer.Option(100, "--limit", min=1, help="At most this many."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Fired and resolved events, newest first."""
    found = get_state(ctx).container.alerts.events(rule, limit)
    if as_json:
        print_json(found)
        return
    rows = ([e.at, e.state, e.value, e.delivered, e.message] for e in found)
    print_table(["at", "state", "value", "delivered", "message"], rows, "alert events")


@app.command("evaluate")
def evaluate(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """Evaluate every rule now; prints the events it produced."""
    state = get_state(ctx)
    state.actor().require("editor")
    found = asyncio.run(state.container.alerts.evaluate())
    if as_json:
        print_json(found)
        return
    for event in found:
        say(event.message)
    if not found:
        say("(no state changes)")
