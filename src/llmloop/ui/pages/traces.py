"""Dashboard pages of traces: the filtered, paged list, one trace with its shadow copies and its
feedback, and the form that adds feedback to a trace.

Traces are read back through the gateway's trace query; feedback goes through the feedback
service (any signed-in role may give it, as over the API). Nothing here writes traces or
aggregates them (the monitoring pages do).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import Form, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from llmloop.core.feedback import FeedbackCreate
from llmloop.core.traces import TracePublic, split_turns
from llmloop.errors import InvalidInputError, LlmloopError
from llmloop.services.actors import Actor
from llmloop.services.container import Container
from llmloop.ui.web import (
    ActorPage,
    Base,
    ContainerPage,
    FormGuard,
    Limit,
    page_router,
    problem_text,
    redirect,
    render,
)

router = page_router()
STATUSES = ("ok", "error", "cancelled")
KINDS = ("primary", "shadow")
MAX_SHADOWS = 20
_AGO = re.compile(r"([0-9]{1,9})\s*(m|h|d)")
_UNIT_S = {"m": 60, "h": 3600, "d": 86400}
QUICK_RANGES = (("last hour", "1h"), ("24 hours", "24h"), ("7 days", "7d"))


def version_names(c: Container, ids: Iterable[str | None]) -> dict[str, str]:
    """Model version id -> "model vN" (ids the registry no longer has are left out)."""
    names: dict[str, str] = {}
    for version_id in {i for i in ids if i}:
        try:
            v = c.models.get_version_by_id(version_id)
        except LlmloopError:
            continue
        names[version_id] = f"{v.model_name} v{v.version}"
    return names


def key_names(c: Container, actor: Actor) -> dict[str, str]:
    """Key id -> key name, for admins only (listing keys needs the admin role over the API)."""
    if actor.role != "admin":
        return {}
    return {k.id: k.name for k in c.keys.list(include_revoked=True)}


@dataclass(frozen=True)
class Filters:
    """The list's filters as the form sent them (empty: not filtered)."""

    deployment: str = ""
    status: str = ""
    kind: str = ""
    user: str = ""
    key: str = ""
    since: str = ""
    until: str = ""

    def query(self) -> str:
        """The filters as a query string (for the pager and links), empty ones left out."""
        return urlencode({k: v for k, v in self.__dict__.items() if v})

    def problems(self) -> list[str]:
        found = []
        if self.status and self.status not in STATUSES:
            found.append(f"status must be one of {', '.join(STATUSES)}, not '{self.status}'")
        if self.kind and self.kind not in KINDS:
            found.append(f"kind must be one of {', '.join(KINDS)}, not '{self.kind}'")
        for name in ("since", "until"):
            try:
                parse_time(getattr(self, name))
            except InvalidInputError as exc:
                found.append(f"{name}: {exc.detail}")
        if not found:
            lo, hi = parse_time(self.since), parse_time(self.until)
            if lo is not None and hi is not None and lo >= hi:
                found.append("since must be before until")
        return found


def parse_time(raw: str, now: datetime | None = None) -> datetime | None:
    """A time ago (``30m``, ``2h``, ``7d``), a date or a date and time (``YYYY-MM-DD HH:MM``,
    ISO 8601); no zone means UTC."""
    text = raw.strip()
    if not text:
        return None
    ago = _AGO.fullmatch(text)
    if ago:
        amount = int(ago.group(1)) * _UNIT_S[ago.group(2)]
        return (now or datetime.now(UTC)) - timedelta(seconds=min(amount, 10**10))
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInputError(
            f"'{raw}' is not a time (use 2h, 7d, YYYY-MM-DD or YYYY-MM-DD HH:MM)"
        ) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


@router.get("/traces")
def trace_list(
    request: Request,
    c: ContainerPage,
    actor: ActorPage,
    base: Base,
    deployment: str = "",
    status: str = "",
    kind: str = "",
    user: str = "",
    key: str = "",
    since: str = "",
    until: str = "",
    limit: Limit = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> HTMLResponse:
    flt = Filters(deployment.strip(), status, kind, user.strip(), key.strip(), since, until)
    problems = flt.problems()
    traces: list[TracePublic] = []
    if not problems:
        traces = c.gateway.traces.list(
            flt.deployment or None, None, limit + 1, status=flt.status or None,
            user=flt.user or None, key_id=flt.key or None, kind=flt.kind or None,
            since=parse_time(flt.since), until=parse_time(flt.until), offset=offset,
        )  # fmt: skip
    more = len(traces) > limit
    traces = traces[:limit]
    query = flt.query()
    plain = Filters(**{**flt.__dict__, "since": "", "until": ""}).query()
    ranges = [(label, f"{base}/traces?" + "&".join(filter(None, [plain, f"since={ago}"])))
              for label, ago in QUICK_RANGES]  # fmt: skip
    return render(
        request,
        "traces/list.html",
        status=422 if problems else 200,
        section="traces",
        flt=flt,
        problems=problems,
        traces=traces,
        more=more,
        limit=limit,
        offset=offset,
        base=f"{base}/traces" + (f"?{query}" if query else ""),
        ranges=ranges,
        deployments=sorted({d.name for d in c.deployments.list()} | {flt.deployment} - {""}),
        statuses=STATUSES,
        kinds=KINDS,
        versions=version_names(c, (t.model_version_id for t in traces)),
        keys=key_names(c, actor),
    )


def _attribute_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


@router.get("/traces/{trace_id}")
def trace_detail(
    request: Request, trace_id: str, c: ContainerPage, actor: ActorPage
) -> HTMLResponse:
    trace = c.gateway.traces.get(trace_id)
    shadows = c.gateway.traces.list(parent_id=trace.id, limit=MAX_SHADOWS)
    related = [trace, *shadows]
    return render(
        request,
        "traces/detail.html",
        section="traces",
        trace=trace,
        messages=split_turns(trace.request_text) if trace.operation == "chat" else [],
        attributes=sorted((k, _attribute_text(v)) for k, v in trace.attributes.items()),
        shadows=shadows,
        feedback=c.feedback.list(trace_id=trace.id),
        versions=version_names(c, (t.model_version_id for t in related)),
        keys=key_names(c, actor),
    )


def _number(field: str, raw: str) -> float | None:
    if not raw.strip():
        return None
    try:
        value = float(raw)
    except ValueError:
        raise InvalidInputError(f"{field}: '{raw}' is not a number") from None
    if not math.isfinite(value):
        raise InvalidInputError(f"{field}: '{raw}' is not a finite number")
    return value


def feedback_spec(fields: dict[str, str]) -> FeedbackCreate:
    """A FeedbackCreate from the form's text fields; InvalidInputError says what is wrong."""
    body: dict[str, Any] = {
        "kind": fields["kind"].strip(),
        "name": fields["name"].strip(),
        "comment": fields["comment"],
        **{k: _number(k, fields[k]) for k in ("value", "scale_min", "scale_max")},
        **{k: fields[k] or None for k in ("correction", "alternative", "preferred")},
    }
    try:
        return FeedbackCreate.model_validate(body)
    except ValidationError as exc:
        raise InvalidInputError(problem_text(exc, 1)) from None


@router.post("/traces/{trace_id}/feedback", dependencies=[FormGuard])
def add_feedback(
    trace_id: str,
    request: Request,
    c: ContainerPage,
    actor: ActorPage,
    base: Base,
    kind: Annotated[str, Form()] = "",
    name: Annotated[str, Form()] = "",
    value: Annotated[str, Form()] = "",
    scale_min: Annotated[str, Form()] = "",
    scale_max: Annotated[str, Form()] = "",
    comment: Annotated[str, Form()] = "",
    correction: Annotated[str, Form()] = "",
    alternative: Annotated[str, Form()] = "",
    preferred: Annotated[str, Form()] = "",
) -> Response:
    """What ``POST /api/traces/{id}/feedback`` does (any role, a viewer included)."""
    trace = c.gateway.traces.get(trace_id)  # an unknown id is a 404 page
    back = f"{base}/traces/{quote(trace.id, safe='')}"
    fields = {"kind": kind, "name": name, "value": value, "scale_min": scale_min,
              "scale_max": scale_max, "comment": comment, "correction": correction,
              "alternative": alternative, "preferred": preferred}  # fmt: skip
    try:
        saved = c.feedback.add(trace.id, feedback_spec(fields), actor)
    except LlmloopError as exc:
        return redirect(request, back, f"Feedback not saved: {exc.detail}", error=True)
    return redirect(request, back + "#feedback", f"Saved {saved.kind} feedback.")
