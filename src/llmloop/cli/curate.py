"""``llmloop curate``: traces → a new dataset version of SFT rows or DPO pairs, with personal
data scrubbed and lineage from every trace used."""

from __future__ import annotations

from typing import Any

import typer

from llmloop.cli.context import get_state
from llmloop.cli.output import print_json, say
from llmloop.core.feedback import CurateCreate, QueueFilter
from llmloop.core.monitoring import parse_since
from llmloop.errors import InvalidInputError

SELECTIONS = ("all", "low-feedback", "corrected", "flagged")


def curate_command(
    ctx: typer.Context,
    from_traces: str = typer.Option(
        "all", "--from-traces", help=f"Which traces: {', '.join(SELECTIONS)}."
    ),
    to: str = typer.Option(..., "--to", help="Dataset to write the new version to."),
    format_: str = typer.Option(..., "--format", help="sft or dpo."),
    deployment: str | None = typer.Option(None, "--deployment", help="Only this deployment."),
    since: str | None = typer.Option(None, "--since", help="Duration back (7d) or ISO time."),
    until: str | None = typer.Option(None, "--until", help="ISO time."),
    max_feedback: float = typer.Option(0.5, "--max-feedback", help="low-feedback: mean ≤ this."),
    style: str = typer.Option("messages", "--style", help="SFT rows: messages or prompt_response."),
    pii: str = typer.Option("redact", "--pii", help="redact, pseudonymise or none."),
    pii_key: str | None = typer.Option(
        None, "--pii-key", envvar="LLMLOOP_PII_KEY", help="Secret key for --pii pseudonymise."
    ),
    limit: int = typer.Option(10_000, "--limit", min=1, help="At most this many traces."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Write a dataset version from traces and their feedback."""
    if from_traces not in SELECTIONS:
        raise InvalidInputError(f"--from-traces must be one of {', '.join(SELECTIONS)}")
    flt: dict[str, Any] = {"deployment": deployment, "limit": limit,
                           "since": parse_since(since) if since else None,
                           "until": parse_since(until) if until else None}  # fmt: skip
    if from_traces == "low-feedback":
        flt["max_feedback"] = max_feedback
    if from_traces == "flagged":
        flt["flagged"] = True
    spec = CurateCreate.model_validate({
        "dataset": to, "format": format_, "filter": QueueFilter(**flt), "sft_style": style,
        "pii": pii, "pii_key": pii_key, "corrected_only": from_traces == "corrected",
    })  # fmt: skip
    state = get_state(ctx)
    result = state.container.curation.curate(spec, state.actor())
    if as_json:
        print_json(result)
    else:
        say(f"{result.dataset} v{result.version}: {result.rows} rows from {result.traces} traces "
            f"({result.pii_found} PII spans scrubbed)")  # fmt: skip
