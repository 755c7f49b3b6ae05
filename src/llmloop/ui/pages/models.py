"""Dashboard pages of the model registry: models, their versions, aliases and stages.

Editors move aliases and stages with plain forms; a protected alias refuses the move, and the
page then asks the governance service for an approval instead (unless the editor unticked
that). Version pages show lineage and audit entries through the governance page helpers, and
the deployments serving the version now.

What this module does not do: create models or versions (the CLI, SDK and training do), or
decide approvals (the governance page does).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, get_args

from fastapi import Form, Path, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from llmloop.core.base import LABEL_PATTERN
from llmloop.core.governance import ApprovalCreate, AuditEntry
from llmloop.core.ids import entity_of
from llmloop.core.models import AliasMove, ModelPublic, ModelVersionPublic, Stage
from llmloop.errors import ApprovalRequiredError, InvalidInputError, LlmloopError, NotFoundError
from llmloop.services.actors import ROLE_RANK, Actor
from llmloop.services.container import Container
from llmloop.ui.pages.governance import MAX_COMMENT, audit_view, lineage_view, segment
from llmloop.ui.web import (
    ActorPage,
    Base,
    ContainerPage,
    FormGuard,
    Limit,
    Offset,
    page_router,
    problem_text,
    redirect,
    render,
)

router = page_router()

STAGES: tuple[str, ...] = get_args(Stage)
MAX_VERSION = 2_147_483_647
VersionPath = Annotated[int, Path(ge=1, le=MAX_VERSION)]


def model_url(base: str, name: str) -> str:
    return f"{base}/models/{segment(name)}"


def version_url(base: str, name: str, version: int) -> str:
    return f"{model_url(base, name)}/versions/{version}"


def role_at_least(actor: Actor, role: str) -> bool:
    return ROLE_RANK.get(actor.role, -1) >= ROLE_RANK[role]


# --- list ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelRow:
    model: ModelPublic
    versions: int
    updated: datetime


def model_row(c: Container, model: ModelPublic) -> ModelRow:
    versions = c.models.list_versions(model.name)
    # A model changes when it gets a version; alias moves are in the audit log, not the row.
    updated = max([model.created_at, *(v.created_at for v in versions)])
    return ModelRow(model, len(versions), updated)


@router.get("/models")
def list_models(
    request: Request,
    c: ContainerPage,
    actor: ActorPage,
    limit: Limit = 50,
    offset: Offset = 0,
) -> HTMLResponse:
    found = c.models.list(limit + 1, offset)  # one more than shown says whether a next page is
    return render(
        request,
        "models/list.html",
        section="models",
        rows=[model_row(c, m) for m in found[:limit]],
        offset=offset,
        limit=limit,
        # The pager shows "next" when count >= limit: pass the limit only if there is more.
        more=limit if len(found) > limit else 0,
    )


# --- one model -------------------------------------------------------------------------------


@router.get("/models/{name}")
def show_model(
    request: Request, c: ContainerPage, actor: ActorPage, base: Base, name: str
) -> HTMLResponse:
    model = c.models.get(name)
    versions = c.models.list_versions(name)
    by_version: dict[int, list[str]] = {}
    for alias, number in sorted(model.aliases.items()):
        by_version.setdefault(number, []).append(alias)
    waiting = [
        a
        for a in c.governance.list_approvals("pending", 1000)
        if a.kind == "model_alias" and a.name == name
    ]
    return render(
        request,
        "models/detail.html",
        section="models",
        bases={v.id: base_link(c, base, v.base_model, versions) for v in versions},
        model=model,
        versions=list(reversed(versions)),
        by_version=by_version,
        waiting=waiting,
        stages=STAGES,
        can_edit=role_at_least(actor, "editor"),
        can_protect=role_at_least(actor, "admin"),
        audit_href=f"{base}/governance?entity_id={segment(model.id)}#audit",
    )


# --- one version -----------------------------------------------------------------------------


def version_number(ref: str) -> int | None:
    """A version number from the path, or None for an alias or ``latest``."""
    if LABEL_PATTERN.match(ref):
        return None
    # ASCII digits only: str.isdigit() also takes '²', which int() refuses.
    number = int(ref) if re.fullmatch(r"[0-9]{1,10}", ref) else 0
    if not 1 <= number <= MAX_VERSION:  # a database integer cannot hold more
        raise NotFoundError(f"no version {ref}")
    return number


def version_audit(c: Container, model: ModelPublic, v: ModelVersionPublic) -> list[AuditEntry]:
    """Entries about the version itself, and alias moves to or from it."""
    entries = {e.id: e for e in c.governance.audit(v.id, 200)}
    for alias in model.aliases:
        for e in c.governance.audit(f"{model.id}:{alias}", 200):
            targets = {(e.before or {}).get("target_id"), (e.after or {}).get("target_id")}
            if v.id in targets:
                entries[e.id] = e
    return [entries[i] for i in sorted(entries)]


def base_link(
    c: Container, base: str, base_model: str, siblings: Sequence[ModelVersionPublic] = ()
) -> tuple[str, str | None]:
    """The base model as text, and a link when it is a version in this registry."""
    if entity_of(base_model) != "model_version":
        return base_model, None
    # Most bases are earlier versions of the same model: no need to ask the store again.
    found = next((v for v in siblings if v.id == base_model), None)
    if found is None:
        try:
            found = c.models.get_version_by_id(base_model)
        except NotFoundError:
            return base_model, None
    href = version_url(base, found.model_name, found.version)
    return f"{found.model_name} v{found.version}", href


@router.get("/models/{name}/versions/{ref}")
def show_version(
    request: Request,
    c: ContainerPage,
    actor: ActorPage,
    base: Base,
    name: str,
    ref: Annotated[str, Path(max_length=64)],
) -> Response:
    number = version_number(ref)
    if number is None:  # an alias or "latest": the page of the version it names today
        return redirect(request, version_url(base, name, c.models.get_version(name, ref).version))
    v = c.models.get_version(name, number)
    model = c.models.get(name)
    base_text, base_href = base_link(c, base, v.base_model)
    return render(
        request,
        "models/version.html",
        section="models",
        model=model,
        v=v,
        aliases=sorted(a for a, n in model.aliases.items() if n == v.version),
        base_text=base_text,
        base_href=base_href,
        run_href=f"{base}/runs/{segment(v.run_id)}" if v.run_id else None,
        paragraphs=[p.strip() for p in re.split(r"\n\s*\n", v.description) if p.strip()],
        audit=[audit_view(base, e) for e in version_audit(c, model, v)],
        served_by=c.deployments.served_by(v.id),
        stages=STAGES,
        can_edit=role_at_least(actor, "editor"),
        **lineage_view(c, base, v.id),
    )


# --- actions ---------------------------------------------------------------------------------


def parse_alias_move(alias: str, version: str) -> AliasMove:
    """The form's alias and version, checked as the REST body would be."""
    try:
        number = int(version.strip())
    except ValueError:
        raise InvalidInputError("version: choose a version number") from None
    try:
        return AliasMove(alias=alias.strip(), version=number)
    except ValidationError as exc:
        raise InvalidInputError(problem_text(exc, 1, "value")) from None


def _back(base: str, name: str, back: str, version: int | None) -> str:
    # The form says which page it came from; only these two, so no address is taken from it.
    if back == "version" and version:
        return version_url(base, name, version)
    return model_url(base, name)


def _ask_approval(
    c: Container, actor: Actor, name: str, move: AliasMove, comment: str, refused: str
) -> tuple[str, bool]:
    """Ask for the protected move; the flash message and whether it is an error."""
    spec = ApprovalCreate(kind="model_alias", name=name, label=move.alias,
                          version=move.version, comment=comment)  # fmt: skip
    try:
        approval = c.governance.request(spec, actor)
    except LlmloopError as exc:
        return f"{refused}; asking for an approval failed too: {exc.detail}", True
    return (
        f"'{move.alias}' is protected, so it did not move: approval {approval.id} was "
        f"requested to point it at version {move.version}. Another admin decides it under "
        "Governance.",
        False,
    )


@router.post("/models/{name}/aliases", dependencies=[FormGuard])
def move_alias(
    request: Request,
    c: ContainerPage,
    actor: ActorPage,
    base: Base,
    name: str,
    alias: Annotated[str, Form()] = "",
    version: Annotated[str, Form()] = "",
    comment: Annotated[str, Form()] = "",
    request_approval: Annotated[str, Form()] = "",
    back: Annotated[str, Form()] = "",
) -> Response:
    actor.require("editor")
    c.models.get(name)  # an unknown model is the 404 page, not a message on it
    number = version.strip()
    url = _back(base, name, back, int(number) if re.fullmatch(r"[0-9]{1,10}", number) else None)
    if len(comment) > MAX_COMMENT:
        message = f"the comment is over {MAX_COMMENT:,} characters"
        return redirect(request, url, message, error=True)
    try:
        move = parse_alias_move(alias, version)
        c.models.set_alias(name, move.alias, move.version, actor)
    except ApprovalRequiredError as exc:
        if not request_approval:
            return redirect(request, url, exc.detail, error=True)
        message, failed = _ask_approval(c, actor, name, move, comment.strip(), exc.detail)
        return redirect(request, url, message, error=failed)
    except LlmloopError as exc:
        return redirect(request, url, exc.detail, error=True)
    return redirect(request, url, f"Alias '{move.alias}' now points at version {move.version}.")


@router.post("/models/{name}/versions/{version}/stage", dependencies=[FormGuard])
def set_stage(
    request: Request,
    c: ContainerPage,
    actor: ActorPage,
    base: Base,
    name: str,
    version: VersionPath,
    stage: Annotated[str, Form()] = "",
    back: Annotated[str, Form()] = "",
) -> Response:
    actor.require("editor")
    c.models.get_version(name, version)  # unknown model or version: the 404 page
    url = _back(base, name, back, version)
    if stage not in STAGES:
        return redirect(request, url, f"stage must be one of {', '.join(STAGES)}", error=True)
    try:
        updated = c.models.set_stage(name, version, stage, actor)
    except LlmloopError as exc:
        return redirect(request, url, exc.detail, error=True)
    message = f"Version {version} is now in stage '{stage}'."
    routes = c.deployments.served_by(updated.id) if stage == "archived" else []
    if routes:  # the stage is a label the gateway does not read: archiving stops nothing
        serving = "; ".join(r.summary for r in routes)
        message += f" Deployments still serve it ({serving}): move the alias or edit them."
    return redirect(request, url, message, error=bool(routes))


@router.post("/models/{name}/protect", dependencies=[FormGuard])
def protect_alias(
    request: Request,
    c: ContainerPage,
    actor: ActorPage,
    base: Base,
    name: str,
    alias: Annotated[str, Form()] = "",
    protect: Annotated[str, Form()] = "on",
) -> Response:
    actor.require("admin")  # the service's rule: only admins protect
    c.models.get(name)
    url = model_url(base, name)
    alias = alias.strip()
    if not LABEL_PATTERN.match(alias):
        message = "alias: must be lower-case letters, digits, '_' or '-', starting with a letter"
        return redirect(request, url, message, error=True)
    on = protect != "off"
    try:
        c.governance.protect("model_alias", name, alias, on, actor)
    except LlmloopError as exc:
        return redirect(request, url, exc.detail, error=True)
    state = "protected: it now moves only through an approval" if on else "no longer protected"
    return redirect(request, url, f"Alias '{alias}' is {state}.")
