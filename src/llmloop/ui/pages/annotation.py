"""The annotation pages: queues with their counts and a form to create one; a queue's page with
its label schema and a "Label next item" button; an item's page with the trace (or dataset row)
and a label form built from the schema, which submits or skips and leases the next item.

Anyone signed in labels and skips (as the REST routes allow); creating and refilling a queue
need the editor role. Leases, validation of labels against the schema and the feedback a label
becomes are ``services/annotation.py``; this module parses forms and shows items.
"""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Form, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from llmloop.core.feedback import ItemPublic, LabelSubmit, QueueCreate, QueuePublic
from llmloop.core.monitoring import parse_since
from llmloop.core.traces import split_turns
from llmloop.errors import InvalidInputError, LlmloopError, NotFoundError
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
    ui_base,
)

router = page_router()

ROLES = ("system", "user", "assistant", "tool", "developer")
BLANK_FORM = {"name": "", "source": "traces", "deployment": "", "status": "", "flagged": "",
              "since": "", "limit": "1000", "dataset": "", "version": "", "kind": "categorical",
              "label_name": "label", "choices": "good, bad", "min": "1", "max": "5",
              "free_text": "on", "ordering": "created"}  # fmt: skip


def queue_url(base: str, name: str) -> str:
    return f"{base}/annotation/{quote(name, safe='')}"


def item_url(base: str, name: str, item_id: int) -> str:
    return f"{queue_url(base, name)}/items/{item_id}"


def _number(text: str, what: str, integer: bool = False) -> float | int | None:
    text = text.strip()
    if not text:
        return None
    try:
        return int(text) if integer else float(text)
    except ValueError:
        kind = "a whole number" if integer else "a number"
        raise InvalidInputError(f"{what} must be {kind}, not {text!r}") from None


def _since(text: str) -> Any:
    if not text.strip():
        return None
    try:
        return parse_since(text.strip())
    except InvalidInputError as exc:
        raise InvalidInputError(f"since: {exc.detail}") from None


def parse_queue(form: dict[str, str]) -> QueueCreate:
    """The create form as a queue spec; InvalidInputError with a clear message when it is not."""
    flagged = {"": None, "yes": True, "no": False}.get(form["flagged"])
    categorical = form["kind"] == "categorical"
    spec: dict[str, Any] = {
        "name": form["name"].strip(),
        "source": form["source"],
        "ordering": form["ordering"],
        "filter": {
            "deployment": form["deployment"].strip() or None,
            "status": form["status"].strip() or None,
            "flagged": flagged,
            "since": _since(form["since"]),
            "limit": _number(form["limit"], "limit", integer=True),
            "dataset": form["dataset"].strip() or None,
            "version": _number(form["version"], "version", integer=True),
        },
        "label_schema": {
            "kind": form["kind"],
            "name": form["label_name"].strip() or "label",
            "choices": [c.strip() for c in re.split(r"[,\n]", form["choices"]) if c.strip()]
            if categorical else [],
            "min": None if categorical else _number(form["min"], "min"),
            "max": None if categorical else _number(form["max"], "max"),
            "free_text": form["free_text"] == "on",
        },
    }  # fmt: skip
    if spec["filter"]["limit"] is None:
        del spec["filter"]["limit"]
    try:
        return QueueCreate.model_validate(spec)
    except ValidationError as exc:
        raise InvalidInputError(problem_text(exc)) from None


def _list_page(
    request: Request, c: Container, actor: Actor, form: dict[str, str],
    error: str | None = None, status: int = 200,
) -> HTMLResponse:  # fmt: skip
    context: dict[str, Any] = {"flash": error, "flash_kind": "error"} if error else {}
    return render(
        request, "annotation/index.html", status, section="annotation",
        queues=c.annotation.list_queues(), form=form,
        deployments=sorted({d.name for d in c.deployments.list()}),
        can_edit=actor.role in ("editor", "admin"), **context,
    )  # fmt: skip


@router.get("/annotation")
def queues(request: Request, c: ContainerPage, actor: ActorPage) -> HTMLResponse:
    return _list_page(request, c, actor, dict(BLANK_FORM))


@router.post("/annotation", dependencies=[FormGuard])
def create_queue(
    request: Request, c: ContainerPage, actor: ActorPage, base: Base,
    name: Annotated[str, Form()] = "", source: Annotated[str, Form()] = "traces",
    deployment: Annotated[str, Form()] = "", status: Annotated[str, Form()] = "",
    flagged: Annotated[str, Form()] = "", since: Annotated[str, Form()] = "",
    limit: Annotated[str, Form()] = "1000", dataset: Annotated[str, Form()] = "",
    version: Annotated[str, Form()] = "", kind: Annotated[str, Form()] = "categorical",
    label_name: Annotated[str, Form()] = "label", choices: Annotated[str, Form()] = "",
    min: Annotated[str, Form()] = "", max: Annotated[str, Form()] = "",
    free_text: Annotated[str, Form()] = "", ordering: Annotated[str, Form()] = "created",
) -> Response:  # fmt: skip
    actor.require("editor")
    form = {"name": name, "source": source, "deployment": deployment, "status": status,
            "flagged": flagged, "since": since, "limit": limit, "dataset": dataset,
            "version": version, "kind": kind, "label_name": label_name, "choices": choices,
            "min": min, "max": max, "free_text": free_text, "ordering": ordering}  # fmt: skip
    try:
        queue = c.annotation.create_queue(parse_queue(form), actor)
    except LlmloopError as exc:  # the form comes back with what was typed, and why it failed
        return _list_page(request, c, actor, form, exc.detail, status=exc.status)
    n = queue.counts.pending
    message = f"Created queue '{queue.name}' with {n} items."
    return redirect(request, queue_url(base, queue.name), message)


@router.get("/annotation/{name}")
def queue_page(name: str, request: Request, c: ContainerPage, actor: ActorPage) -> HTMLResponse:
    queue = c.annotation.get_queue(name)
    return render(
        request,
        "annotation/queue.html",
        section="annotation",
        queue=queue,
        counts=c.annotation.counts(name),
        can_edit=actor.role in ("editor", "admin"),
    )


@router.post("/annotation/{name}/next", dependencies=[FormGuard])
def lease_next(name: str, request: Request, c: ContainerPage, actor: ActorPage) -> Response:
    return _to_next(request, c, name, actor, "")


def _to_next(request: Request, c: Container, name: str, actor: Actor, done: str) -> Response:
    """Lease the annotator's next item and go to it; back to the queue when none is left."""
    base = ui_base(request)
    try:
        item = c.annotation.next_item(name, actor.name)
    except LlmloopError as exc:
        return redirect(request, f"{base}/annotation", exc.detail, error=True)
    if item is None:
        message = f"{done} Nothing is left to label in this queue.".strip()
        return redirect(request, queue_url(base, name), message)
    return redirect(request, item_url(base, name, item.id), done)


@router.post("/annotation/{name}/refill", dependencies=[FormGuard])
def refill(name: str, request: Request, c: ContainerPage, actor: ActorPage, base: Base) -> Response:
    actor.require("editor")
    back = queue_url(base, name)
    try:
        added = c.annotation.refill(name, actor)
    except LlmloopError as exc:
        return redirect(request, back, exc.detail, error=True)
    return redirect(request, back, f"Added {added} new items that match the queue's filter.")


def _item_number(name: str, item_id: str) -> int:
    if not (item_id.isascii() and item_id.isdigit()) or len(item_id) > 18:
        raise NotFoundError(f"queue '{name}' has no item {item_id!r}")
    return int(item_id)


def conversation(item: ItemPublic) -> list[tuple[str, str]]:
    """(role, text) turns of the item: a trace's request then its response, or a row's."""
    content = item.content
    if "request_text" in content:
        text = str(content.get("request_text") or "")
        turns = split_turns(text) or [("prompt", text)]  # or a plain completion prompt
        return [*turns, ("response", str(content.get("response_text") or ""))]
    messages = content.get("messages")
    if isinstance(messages, list):
        return [
            (str(m.get("role")), str(m.get("content", ""))) for m in messages if isinstance(m, dict)
        ]
    return []


@router.get("/annotation/{name}/items/{item_id}")
def item_page(
    name: str, item_id: str, request: Request, c: ContainerPage, actor: ActorPage
) -> Response:
    # Reading an item leases nothing (a prefetch or a link must not take work from others);
    # "Label next item" is the POST that leases.
    item = c.annotation.get_item(name, _item_number(name, item_id))
    return _render_item(request, c.annotation.get_queue(name), item, actor)


def _render_item(
    request: Request, queue: QueuePublic, item: ItemPublic, actor: Actor
) -> HTMLResponse:
    turns = conversation(item)
    # The same rule as the service's: an open item that is free, yours, or any (for an admin).
    open_item = item.status not in ("labelled", "skipped")
    can_label = open_item and (item.assignee in (None, actor.name) or actor.role == "admin")
    return render(
        request,
        "annotation/item.html",
        section="annotation",
        queue=queue,
        item=item,
        turns=[(role, role if role in ROLES else "other", text) for role, text in turns],
        trace_id=item.item_ref if queue.source == "traces" else None,
        can_label=can_label,
    )


def parse_label(queue: QueuePublic, value: str, text: str) -> LabelSubmit:
    """The label form as a LabelSubmit of the schema's kind (the service checks the range)."""
    if not value.strip():
        raise InvalidInputError("choose a label first" if queue.label_schema.kind ==
                                "categorical" else "enter a number first")  # fmt: skip
    number = _number(value, "the label") if queue.label_schema.kind == "numeric" else None
    try:
        return LabelSubmit(value=value if number is None else number, text=text.strip())
    except ValidationError as exc:
        raise InvalidInputError(problem_text(exc)) from None


@router.post("/annotation/{name}/items/{item_id}/label", dependencies=[FormGuard])
def label_item(
    name: str, item_id: str, request: Request, c: ContainerPage, actor: ActorPage, base: Base,
    value: Annotated[str, Form()] = "", text: Annotated[str, Form()] = "",
) -> Response:  # fmt: skip
    queue = c.annotation.get_queue(name)
    number = _item_number(name, item_id)
    try:
        c.annotation.label(name, number, parse_label(queue, value, text), actor)
    except InvalidInputError as exc:  # a bad label: stay on the item
        return redirect(request, item_url(base, name, number), exc.detail, error=True)
    except LlmloopError as exc:  # labelled, skipped or held by someone else meanwhile
        return redirect(request, queue_url(base, name), _lost(exc), error=True)
    return _to_next(request, c, name, actor, f"Labelled item {number}.")


@router.post("/annotation/{name}/items/{item_id}/skip", dependencies=[FormGuard])
def skip_item(
    name: str, item_id: str, request: Request, c: ContainerPage, actor: ActorPage, base: Base
) -> Response:
    c.annotation.get_queue(name)
    number = _item_number(name, item_id)
    try:
        c.annotation.skip(name, number, actor)
    except LlmloopError as exc:
        return redirect(request, queue_url(base, name), _lost(exc), error=True)
    return _to_next(request, c, name, actor, f"Skipped item {number}.")


def _lost(exc: LlmloopError) -> str:
    if "assigned to" in exc.detail:
        return f"{exc.detail}: your lease expired and someone else holds it now."
    return exc.detail
