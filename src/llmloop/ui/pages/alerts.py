"""The alerts pages: rules with their state, recent events, a form to create a rule, delete and
evaluate-now buttons, and one rule's page with its events.

Role checks match the REST routes: anyone signed in reads; creating, deleting and evaluating
need the editor role (the service checks too). Evaluating rules and sending notifications is
``services/alerts.py``; this module only parses the form and shows the result.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import Form, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from llmloop.core.alerts import DRIFT_PREFIX, AlertRuleCreate
from llmloop.core.monitoring import METRICS, parse_duration
from llmloop.errors import InvalidInputError, LlmloopError
from llmloop.services.actors import Actor
from llmloop.services.container import Container
from llmloop.ui.web import (
    ActorPage,
    Base,
    ContainerPage,
    FormGuard,
    page_router,
    problem_text,
    redirect,
    render,
)

router = page_router()

DRIFT_METRICS = ("input_embedding", "prompt_length", "output_length", "refusal_rate",
                 "error_rate", "guard_block_rate", "feedback_score")  # fmt: skip
METRIC_CHOICES = (*METRICS, *(DRIFT_PREFIX + m for m in DRIFT_METRICS))
COMPARISONS = (">", ">=", "<", "<=")
FORM_NAMES = {"window_s": "window (seconds)", "for_s": "for (seconds)"}
EVENT_ROWS = 50
BLANK_FORM = {"name": "", "metric": "error_rate", "comparison": ">", "threshold": "",
              "window": "5m", "for_duration": "0", "deployment": "", "webhook_url": ""}  # fmt: skip


def duration_text(seconds: float | None) -> str:
    """Seconds as the shortest of ``90s``, ``5m``, ``2h``, ``7d``."""
    if seconds is None:
        return "-"
    if seconds == 0:
        return "0"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _seconds(text: str, what: str, zero_ok: bool = False) -> float:
    """``5m``, ``1h`` or a bare number of seconds; InvalidInputError names the field."""
    text = text.strip()
    if zero_ok and text in ("", "0", "0s"):
        return 0.0
    try:
        return (
            float(text)
            if text.replace(".", "", 1).isascii() and text.replace(".", "", 1).isdigit()
            else parse_duration(text)
        )
    except InvalidInputError as exc:
        raise InvalidInputError(f"{what}: {exc.detail}") from None


def parse_rule(form: dict[str, str]) -> AlertRuleCreate:
    """The create form as a rule; InvalidInputError with a clear message when it is not one."""
    try:
        threshold = float(form["threshold"])
    except ValueError:
        threshold = math.nan
    if not math.isfinite(threshold):  # NaN would be stored as null and break the rule list
        raise InvalidInputError(f"threshold must be a number, not {form['threshold']!r}")
    spec = {
        "name": form["name"].strip(),
        "metric": form["metric"].strip(),
        "comparison": form["comparison"],
        "threshold": threshold,
        "window_s": _seconds(form["window"], "window"),
        "for_s": _seconds(form["for_duration"], "for", zero_ok=True),
        "deployment": form["deployment"].strip() or None,
        "webhook_url": form["webhook_url"].strip() or None,
    }
    try:
        return AlertRuleCreate.model_validate(spec)
    except ValidationError as exc:  # the form's names: it has no window_s field
        raise InvalidInputError(problem_text(exc, names=FORM_NAMES)) from None


def _page(
    request: Request, c: Container, actor: Actor, form: dict[str, str],
    error: str | None = None, status: int = 200,
) -> HTMLResponse:  # fmt: skip
    rules = c.alerts.list()
    names = {r.id: r.name for r in rules}
    context: dict[str, Any] = {"flash": error, "flash_kind": "error"} if error else {}
    deployments = sorted({d.name for d in c.deployments.list()})
    return render(
        request, "alerts/index.html", status, section="alerts", rules=rules,
        events=[(names.get(e.rule_id, e.rule_id), e) for e in c.alerts.events(limit=EVENT_ROWS)],
        form=form, metrics=METRIC_CHOICES, comparisons=COMPARISONS, deployments=deployments,
        can_edit=actor.role in ("editor", "admin"), dur=duration_text, **context,
    )  # fmt: skip


@router.get("/alerts")
def alerts(request: Request, c: ContainerPage, actor: ActorPage) -> HTMLResponse:
    return _page(request, c, actor, dict(BLANK_FORM))


@router.post("/alerts", dependencies=[FormGuard])
def create_rule(
    request: Request,
    c: ContainerPage,
    actor: ActorPage,
    base: Base,
    name: Annotated[str, Form()] = "",
    metric: Annotated[str, Form()] = "",
    comparison: Annotated[str, Form()] = ">",
    threshold: Annotated[str, Form()] = "",
    window: Annotated[str, Form()] = "5m",
    for_duration: Annotated[str, Form()] = "0",
    deployment: Annotated[str, Form()] = "",
    webhook_url: Annotated[str, Form()] = "",
) -> Response:
    actor.require("editor")
    form = {"name": name, "metric": metric, "comparison": comparison, "threshold": threshold,
            "window": window, "for_duration": for_duration, "deployment": deployment,
            "webhook_url": webhook_url}  # fmt: skip
    try:
        rule = c.alerts.create(parse_rule(form), actor)
    except LlmloopError as exc:  # the form comes back with what was typed, and why it failed
        return _page(request, c, actor, form, exc.detail, status=exc.status)
    return redirect(request, f"{base}/alerts", f"Created alert rule '{rule.name}'.")


@router.post("/alerts/evaluate", dependencies=[FormGuard])
async def evaluate(request: Request, c: ContainerPage, actor: ActorPage, base: Base) -> Response:
    actor.require("editor")
    events = await c.alerts.evaluate()
    fired = sum(e.state == "firing" for e in events)
    return redirect(
        request,
        f"{base}/alerts",
        f"Evaluated the rules: {fired} fired, {len(events) - fired} resolved.",
    )


@router.get("/alerts/{name}")
def rule_page(name: str, request: Request, c: ContainerPage, actor: ActorPage) -> HTMLResponse:
    rule = c.alerts.get(name)
    return render(
        request,
        "alerts/rule.html",
        section="alerts",
        rule=rule,
        events=c.alerts.events(name, limit=EVENT_ROWS),
        can_edit=actor.role in ("editor", "admin"),
        dur=duration_text,
    )


@router.post("/alerts/{name}/delete", dependencies=[FormGuard])
def delete_rule(
    name: str, request: Request, c: ContainerPage, actor: ActorPage, base: Base
) -> Response:
    actor.require("editor")
    try:
        c.alerts.delete(name, actor)
    except LlmloopError as exc:
        return redirect(request, f"{base}/alerts", exc.detail, error=True)
    return redirect(request, f"{base}/alerts", f"Deleted alert rule '{name}' and its events.")
