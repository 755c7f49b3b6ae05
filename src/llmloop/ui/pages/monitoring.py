"""The monitoring page: serving metrics of traces over a window, charted per group, a summary per
group, and the latest drift results.

The window, deployment filter and grouping come from a GET form, so a view is a link. Only
reads: the numbers come from ``c.monitoring`` and ``c.drift``; alert rules on these metrics are
the alerts page, and running a drift test is the CLI's or the scheduler's job.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse

from llmloop.core.monitoring import Dimension, MetricsRow
from llmloop.errors import InvalidInputError
from llmloop.services.actors import Actor
from llmloop.services.container import Container
from llmloop.ui.charts import line_chart
from llmloop.ui.web import ActorPage, ContainerPage, page_router, render, svg

router = page_router()

# window -> (label, span in seconds, bucket in seconds): every chart gets 60-120 points.
WINDOWS: dict[str, tuple[str, int, int]] = {
    "1h": ("1 h", 3600, 60),
    "6h": ("6 h", 6 * 3600, 300),
    "24h": ("24 h", 86400, 900),
    "7d": ("7 d", 7 * 86400, 7200),
    "30d": ("30 d", 30 * 86400, 21600),
}
DIMENSIONS: dict[str, str] = {
    "deployment": "deployment",
    "model_version": "model version",
    "prompt_version": "prompt version",
    "key": "API key",
}
MAX_SERIES = 8  # the chart palette's size: more lines than colours cannot be told apart
DRIFT_ROWS = 50
Getter = Callable[[MetricsRow], float | None]


@dataclass(frozen=True)
class ChartSpec:
    """One chart: its fields (one series each for a single group), the field shown per group
    when there are several (``focus``), or one chart per field (``split``)."""

    title: str
    unit: str
    fields: tuple[tuple[str, Getter], ...]
    zero_fill: bool = False  # a bucket without traffic is 0 (counts), not a gap (percentiles)
    focus: int = 0
    split: bool = False


def _pct(value: float | None) -> float | None:
    return None if value is None else value * 100


CHARTS: tuple[ChartSpec, ...] = (
    ChartSpec("Request rate", "/min", (("requests/min", lambda r: r.request_rate * 60),), True),
    ChartSpec("Latency", " ms", (("p50", lambda r: r.latency_p50),
                                 ("p95", lambda r: r.latency_p95),
                                 ("p99", lambda r: r.latency_p99)), focus=1),
    ChartSpec("Time to first token", " ms", (("p50", lambda r: r.ttft_p50),
                                             ("p95", lambda r: r.ttft_p95)), focus=1),
    ChartSpec("Tokens", "", (("input tokens", lambda r: float(r.input_tokens)),
                             ("output tokens", lambda r: float(r.output_tokens))),
              zero_fill=True, split=True),
    ChartSpec("Cost", " $", (("cost", lambda r: r.cost),), True),
    ChartSpec("Error rate", " %", (("errors", lambda r: _pct(r.error_rate)),)),
    ChartSpec("Guard-block rate", " %", (("blocked", lambda r: _pct(r.guard_block_rate)),)),
    ChartSpec("Feedback mean (0..1)", "", (("feedback", lambda r: r.feedback_mean),)),
)  # fmt: skip


@dataclass(frozen=True)
class View:
    """The parsed toolbar: what to show."""

    window: str
    deployment: str
    group_by: Dimension
    since: datetime
    until: datetime
    bucket_s: int


def parse_view(window: str, deployment: str, group_by: str, now: datetime) -> View:
    """Check the toolbar's values; InvalidInputError (a 422 page) names the bad one."""
    if window not in WINDOWS:
        raise InvalidInputError(f"window must be one of {', '.join(WINDOWS)}, not {window!r}")
    if group_by not in DIMENSIONS:
        raise InvalidInputError(
            f"group by must be one of {', '.join(DIMENSIONS)}, not {group_by!r}"
        )
    if len(deployment) > 256:
        raise InvalidInputError("deployment: a name is at most 256 characters")
    _, span, bucket = WINDOWS[window]
    dim: Dimension = group_by  # type: ignore[assignment]  # checked against DIMENSIONS above
    return View(window, deployment.strip(), dim, now - timedelta(seconds=span), now, bucket)


def group_label(row: MetricsRow, dim: Dimension, names: dict[str, str]) -> str:
    value = getattr(row, dim)
    if value is None or value == "":
        return "(none)"
    return names.get(str(value), str(value))


def bucket_grid(view: View) -> list[datetime]:
    """Every bucket start of the window, so that a bucket without traffic shows as 0 or a gap."""
    step = view.bucket_s
    first = int(view.since.timestamp() // step) * step
    last = view.until.timestamp()
    return [datetime.fromtimestamp(s, UTC) for s in range(first, int(last) + 1, step)]


def build_charts(
    view: View, rows: Sequence[MetricsRow], groups: list[str], label: Callable[[MetricsRow], str]
) -> list[tuple[str, Any]]:
    """(title, svg) for every chart: one series per group, or per field for a single group."""
    grid = bucket_grid(view)
    by_group: dict[str, dict[datetime, MetricsRow]] = {g: {} for g in groups}
    for row in rows:
        name = label(row)
        if name in by_group and row.bucket is not None:
            by_group[name][row.bucket] = row
    span = (grid[0], grid[-1]) if grid else None
    out = []
    for spec in CHARTS:
        if len(groups) == 1:
            panels = [(spec.title, [(f, get, groups[0]) for f, get in spec.fields])]
        elif spec.split:
            panels = [(f"{spec.title}: {f}", [(g, get, g) for g in groups])
                      for f, get in spec.fields]  # fmt: skip
        else:
            field, get = spec.fields[spec.focus]
            title = spec.title if len(spec.fields) == 1 else f"{spec.title} {field}"
            panels = [(title, [(g, get, g) for g in groups])]
        for title, lines in panels:
            series = [
                (name, [(at, _point(by_group[g].get(at), get, spec.zero_fill)) for at in grid])
                for name, get, g in lines
            ]
            chart = line_chart(series, unit=spec.unit, title=title, x_range=span)
            out.append((title, svg(chart)))
    return out


def _point(row: MetricsRow | None, get: Getter, zero_fill: bool) -> float | None:
    if row is None:
        return 0.0 if zero_fill else None
    return get(row)


def _key_names(c: Container, actor: Actor) -> dict[str, str]:
    """Key id -> name, for admins only (listing keys needs the admin role)."""
    if actor.role != "admin":
        return {}
    return {k.id: k.name for k in c.keys.list(include_revoked=True)}


def _deployments(c: Container, view: View) -> list[str]:
    """Declared deployments and the ones traces of the window name (they can differ)."""
    names = {d.name for d in c.deployments.list()} | set(c.drift.deployments_since(view.since))
    if view.deployment:
        names.add(view.deployment)
    return sorted(names)


@router.get("/monitoring")
def monitoring(
    request: Request,
    c: ContainerPage,
    actor: ActorPage,
    window: str = "24h",
    deployment: str = "",
    group_by: str = "deployment",
) -> HTMLResponse:
    view = parse_view(window, deployment, group_by, datetime.now(UTC))
    dep = view.deployment or None
    names = _key_names(c, actor) if view.group_by == "key" else {}

    def label(row: MetricsRow) -> str:
        return group_label(row, view.group_by, names)

    summary = c.monitoring.summary(view.since, view.until, [view.group_by], dep)
    summary.sort(key=lambda r: (-r.requests, label(r)))
    totals = c.monitoring.summary(view.since, view.until, [], dep)
    series = c.monitoring.timeseries(view.since, view.bucket_s, view.until, [view.group_by], dep)
    groups = [label(r) for r in summary][:MAX_SERIES]
    return render(
        request,
        "monitoring/index.html",
        section="monitoring",
        view=view,
        windows=WINDOWS,
        dimensions=DIMENSIONS,
        deployments=_deployments(c, view),
        summary=[(label(r), r) for r in summary],
        total=totals[0] if totals else None,
        charts=build_charts(view, series, groups, label) if groups else [],
        hidden_groups=max(0, len(summary) - MAX_SERIES),
        drift=list(reversed(c.drift.history(dep, limit=DRIFT_ROWS))),
    )
