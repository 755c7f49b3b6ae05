"""The keys page: API keys with their limits, what each spent against its budget, its last day of
traffic, and the admin's actions (create a key and see its secret once, change limits, revoke).

Admins only, as over the API. The spend is the gateway's own running total (the one its budget
check uses), so the page shows exactly what the next request will be judged against. Nothing
here enforces a limit; the gateway's policy does.
"""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import Form, Request
from fastapi.responses import HTMLResponse, Response

from llmloop.core.governance import ApiKeyCreate, ApiKeyPublic
from llmloop.errors import InvalidInputError, LlmloopError
from llmloop.services.actors import Actor
from llmloop.services.container import Container
from llmloop.ui.web import (
    ActorPage,
    Base,
    ContainerPage,
    FormGuard,
    page_router,
    redirect,
    render,
)

router = page_router()
ROLES = ("viewer", "editor", "admin")
# name -> (label, integer?) in the order the form shows them
LIMITS = {
    "rpm": ("requests per minute", True),
    "tpm": ("tokens per minute", True),
    "max_concurrent": ("concurrent requests", True),
    "budget_usd": ("budget (USD)", False),
}


def parse_limits(form: dict[str, str]) -> dict[str, float]:
    """The limit fields of a form (empty: no limit); InvalidInputError names the bad one."""
    limits: dict[str, float] = {}
    for name, (label, integer) in LIMITS.items():
        text = form.get(name, "").strip()
        if not text:
            continue
        try:
            value = float(text)
        except ValueError:
            raise InvalidInputError(f"{label} must be a number, not {text!r}") from None
        if not math.isfinite(value) or value < 0:
            raise InvalidInputError(f"{label} must be a finite number of 0 or more")
        if integer and not value.is_integer():
            raise InvalidInputError(f"{label} must be a whole number")
        limits[name] = int(value) if integer else value
    return limits


async def _rows(c: Container, keys: list[ApiKeyPublic]) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    day = await asyncio.to_thread(c.monitoring.summary, now - timedelta(days=1), now, ["key"])
    by_key = {r.key: r for r in day}
    backend = c.gateway.limits
    rows = []
    for key in keys:
        spent = await backend.spent(key.id) if backend is not None else 0.0
        budget = key.limits.get("budget_usd")
        rows.append({
            "key": key, "spent": spent, "day": by_key.get(key.id),
            "budget_share": min(1.0, spent / budget) if budget else None,
        })  # fmt: skip
    return rows


async def _page(
    request: Request, c: Container, actor: Actor, status: int = 200, **context: Any
) -> HTMLResponse:
    actor.require("admin")
    keys = await asyncio.to_thread(c.keys.list, True)
    context.setdefault("created", None)
    context.setdefault("form", {})
    context.setdefault("error", None)
    return render(
        request, "keys/index.html", status=status, section="keys",
        rows=await _rows(c, keys), roles=ROLES, limit_fields=LIMITS, **context,
    )  # fmt: skip


@router.get("/keys")
async def keys_page(request: Request, c: ContainerPage, actor: ActorPage) -> HTMLResponse:
    return await _page(request, c, actor)


@router.post("/keys", dependencies=[FormGuard])
async def create_key(
    request: Request, c: ContainerPage, actor: ActorPage,
    name: Annotated[str, Form()] = "", role: Annotated[str, Form()] = "viewer",
    rpm: Annotated[str, Form()] = "", tpm: Annotated[str, Form()] = "",
    max_concurrent: Annotated[str, Form()] = "", budget_usd: Annotated[str, Form()] = "",
) -> Response:  # fmt: skip
    """Create a key and show its secret on this answer (never stored, never shown again)."""
    actor.require("admin")
    form = {"name": name, "role": role, "rpm": rpm, "tpm": tpm,
            "max_concurrent": max_concurrent, "budget_usd": budget_usd}  # fmt: skip
    try:
        if not name.strip() or len(name.strip()) > 128:
            raise InvalidInputError("a key needs a name of 1 to 128 characters")
        if role not in ROLES:
            raise InvalidInputError(f"the role is one of {', '.join(ROLES)}")
        spec = ApiKeyCreate.model_validate(
            {"name": name.strip(), "role": role, "limits": parse_limits(form)}
        )
        created = await asyncio.to_thread(c.keys.create, spec, actor)
    except LlmloopError as exc:
        return await _page(request, c, actor, status=exc.status, form=form, error=exc.detail)
    return await _page(request, c, actor, status=201, created=created)


@router.post("/keys/{key_id}/limits", dependencies=[FormGuard])
async def set_limits(
    key_id: str, request: Request, c: ContainerPage, actor: ActorPage, base: Base,
    rpm: Annotated[str, Form()] = "", tpm: Annotated[str, Form()] = "",
    max_concurrent: Annotated[str, Form()] = "", budget_usd: Annotated[str, Form()] = "",
) -> Response:  # fmt: skip
    actor.require("admin")
    back = f"{base}/keys"
    form = {"rpm": rpm, "tpm": tpm, "max_concurrent": max_concurrent, "budget_usd": budget_usd}
    try:
        limits = parse_limits(form)
        key = await asyncio.to_thread(c.keys.set_limits, key_id, limits, actor)
    except LlmloopError as exc:
        return redirect(request, back, exc.detail, error=True)
    shown = ", ".join(f"{k}={v:g}" for k, v in limits.items()) or "none"
    return redirect(request, back, f"Limits of '{key.name}' are now: {shown}.")


@router.post("/keys/{key_id}/revoke", dependencies=[FormGuard])
async def revoke_key(
    key_id: str, request: Request, c: ContainerPage, actor: ActorPage, base: Base
) -> Response:
    actor.require("admin")
    back = f"{base}/keys"
    try:
        key = await asyncio.to_thread(c.keys.revoke, key_id, actor)
    except LlmloopError as exc:
        return redirect(request, back, exc.detail, error=True)
    message = f"Key '{key.name}' is revoked: requests with it are refused from now."
    return redirect(request, back, message)
