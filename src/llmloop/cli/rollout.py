"""``llmloop rollout``: canary a challenger version on a deployment, judge it on live feedback,
then promote it or roll it back (``--apply``); a protected champion alias needs ``--approver``.
"""

from __future__ import annotations

import typer

from llmloop.cli.context import get_state
from llmloop.cli.output import print_json, say

app = typer.Typer(
    help="Canary, judge and promote or roll back model versions.", no_args_is_help=True
)


@app.command("start")
def start(
    ctx: typer.Context,
    deployment: str = typer.Argument(..., help="Deployment (public model name)."),
    model: str = typer.Option(..., "--model", help="Registry model."),
    version: int = typer.Option(..., "--version", help="Challenger version number."),
    weight: float = typer.Option(0.2, "--weight", help="Share of traffic for the challenger."),
) -> None:
    """Point the challenger alias at a version and split traffic with the champion."""
    state = get_state(ctx)
    dep = state.container.rollout.start_canary(deployment, model, version, state.actor(), weight)
    say(f"{dep.name}: champion {1 - weight:.0%} / challenger v{version} {weight:.0%}")


@app.command("evaluate")
def evaluate(
    ctx: typer.Context,
    deployment: str = typer.Argument(..., help="Deployment (public model name)."),
    model: str = typer.Option(..., "--model", help="Registry model."),
    since: str = typer.Option("1h", "--since", help="Window start: 30m, 2h, 1d or ISO time."),
    min_requests: int = typer.Option(
        20, "--min-requests", min=1, help="Requests per side (each side needs feedback too)."
    ),
    margin: float = typer.Option(0.0, "--margin", help="How much better the challenger must be."),
    apply: bool = typer.Option(False, "--apply", help="Promote or roll back now."),
    approver: str | None = typer.Option(
        None, "--approver", help="Second admin who approves moving a protected champion alias."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Compare live feedback of challenger and champion; with --apply, act on it."""
    from llmloop.core.monitoring import parse_since

    state = get_state(ctx)
    svc = state.container.rollout
    decision = svc.evaluate(deployment, model, parse_since(since), min_requests, margin)
    if apply:
        decision = svc.apply(decision, state.actor(), state.actor(approver) if approver else None)
    if as_json:
        print_json(decision)
        return
    say(f"{decision.decision}: {decision.reason}")
