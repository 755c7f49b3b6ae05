"""The overview page: what the registry holds, how serving went in the last day, what is firing.

Only reads; each panel links to the page of its noun.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi import Request
from fastapi.responses import HTMLResponse

from llmloop.ui.charts import line_chart
from llmloop.ui.web import ActorPage, ContainerPage, page_router, render, svg

router = page_router()


@router.get("/")
def overview(request: Request, c: ContainerPage, actor: ActorPage) -> HTMLResponse:
    now = datetime.now(UTC)
    since = now - timedelta(hours=24)
    by_deployment = c.monitoring.summary(since, now)
    totals = c.monitoring.summary(since, now, group_by=[])
    hourly = c.monitoring.timeseries(since, 3600, now, group_by=[])
    counts = {
        "models": c.models.count(),
        "datasets": c.datasets.count(),
        "prompts": c.prompts.count(),
        "deployments": len(c.deployments.list()),
    }
    firing = [rule for rule in c.alerts.list() if rule.state == "firing"]
    per_hour = {r.bucket: float(r.requests) for r in hourly if r.bucket}
    start = since.replace(minute=0, second=0, microsecond=0)
    hours = [start + timedelta(hours=h) for h in range(25)]
    chart = line_chart(
        [("requests", [(h, per_hour.get(h, 0.0)) for h in hours])],  # quiet hours are zeros
        title="requests per hour, last 24 h",
        x_range=(hours[0], hours[-1]),
    )
    return render(
        request,
        "overview.html",
        section="overview",
        counts=counts,
        total=totals[0] if totals else None,
        by_deployment=by_deployment,
        firing=firing,
        recent=c.gateway.traces.list(limit=10),
        approvals=c.governance.list_approvals(status="pending", limit=10),
        chart=svg(chart),
    )
