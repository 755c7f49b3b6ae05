"""``llmloop monitor``: request rate, latency and TTFT percentiles, tokens, cost, error and
guard-block rates and mean feedback over recent traces, in one table (or JSON)."""

from __future__ import annotations

from typing import cast

import typer

from llmloop.cli.context import get_state
from llmloop.cli.output import print_json, print_table
from llmloop.core.monitoring import Dimension, parse_duration, parse_since
from llmloop.errors import InvalidInputError

DIMENSIONS = ("deployment", "model_version", "prompt_version", "key")


def monitor_command(
    ctx: typer.Context,
    deployment: str | None = typer.Option(None, "--deployment", help="Only this deployment."),
    since: str = typer.Option("1h", "--since", help="Duration back (1h, 7d) or ISO time."),
    until: str | None = typer.Option(None, "--until", help="ISO time (default now)."),
    bucket: str | None = typer.Option(None, "--bucket", help="Time buckets, e.g. 5m."),
    by: list[str] = typer.Option(
        [], "--by", help=f"Group by (repeatable): {', '.join(DIMENSIONS)}; default deployment."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Monitoring aggregates of traces per deployment (or --by) and time bucket."""
    bad = [d for d in by if d not in DIMENSIONS]
    if bad:
        raise InvalidInputError(f"--by must be one of {', '.join(DIMENSIONS)}, not {bad[0]!r}")
    group = cast(list[Dimension], by or ["deployment"])
    start, end = parse_since(since), parse_since(until) if until else None
    service = get_state(ctx).container.monitoring
    if bucket:
        rows = service.timeseries(start, parse_duration(bucket), end, group, deployment)
    else:
        rows = service.summary(start, end, group, deployment)
    if as_json:
        print_json(rows)
        return
    names = ["bucket", *group, "req", "req/s", "p50 ms", "p95 ms", "p99 ms", "ttft p50",
             "ttft p95", "tok in", "tok out", "cost", "err", "blocked", "feedback"]  # fmt: skip
    table = (
        [r.bucket, *(getattr(r, g) for g in group), r.requests, r.request_rate, r.latency_p50,
         r.latency_p95, r.latency_p99, r.ttft_p50, r.ttft_p95, r.input_tokens, r.output_tokens,
         r.cost, r.error_rate, r.guard_block_rate, r.feedback_mean]
        for r in rows
    )  # fmt: skip
    print_table(names, table, title="traces")
