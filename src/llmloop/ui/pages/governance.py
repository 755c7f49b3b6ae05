"""Dashboard pages of governance: approvals to decide, the audit log, and lineage graphs.

The pages read through the governance service and post decisions back to it; the service alone
decides who may approve what (four eyes, admins only), and its refusals are shown as they come.
The lineage and audit views built here are reused by the model version page.

What this module does not do: protect or move labels (the model and prompt pages do) or page
the approval lists by offset (the service has none: "show more" raises the limit instead).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import Form, Path, Query, Request
from fastapi.responses import HTMLResponse, Response

from llmloop.core.governance import ApprovalPublic, AuditEntry, LineageGraph, LineageNode
from llmloop.core.ids import entity_of
from llmloop.errors import LlmloopError
from llmloop.services.actors import ROLE_RANK, Actor
from llmloop.services.container import Container
from llmloop.ui.web import (
    ActorPage,
    Base,
    ContainerPage,
    FormGuard,
    Limit,
    page_router,
    redirect,
    render,
    ui_base,
)

router = page_router()

MAX_COMMENT = 10_000
MORE_CAP = 1000
DEFAULTS = {"limit": 50, "pending": 50, "decided": 20, "before_id": 0}
#: Entities the lineage service can draw a graph for (their ids carry one of these prefixes).
LINEAGE_KINDS = {"dataset", "dataset_version", "prompt", "prompt_version", "run", "model",
                 "model_version", "trace", "deployment"}  # fmt: skip
ENTITY_ID = re.compile(r"^[a-z]{2,4}_[0-9A-Z]{26}$")


# --- lineage, shared with the model version page --------------------------------------------


@dataclass(frozen=True)
class NodeView:
    """One lineage node as a table row: what it is, where its page is, how far from the root."""

    id: str
    kind: str
    label: str
    href: str | None
    graph: str
    depth: int = 0


def segment(value: str) -> str:
    """A URL path segment: names and ids may hold characters a path must not carry raw."""
    return quote(value, safe="")


def node_href(base: str, node: LineageNode) -> str | None:
    """The dashboard page of a node, when the graph says enough to build its address."""
    kind, label = node.type, node.label
    if kind == "run":
        return f"{base}/runs/{segment(node.id)}"
    if kind == "trace":
        return f"{base}/traces/{segment(node.id)}"
    if label == node.id:  # the service labels a node by its id when the row is gone
        return None
    if kind in ("dataset", "prompt", "model", "deployment"):
        return f"{base}/{kind}s/{segment(label)}"
    if kind in ("dataset_version", "prompt_version", "model_version"):
        name, sep, number = label.rpartition(":v")
        if not sep or name == "?" or not (number.isascii() and number.isdigit()):
            return None
        if kind == "prompt_version":
            return f"{base}/prompts/{segment(name)}"
        return f"{base}/{kind.removesuffix('_version')}s/{segment(name)}/versions/{number}"
    return None


def node_view(base: str, node: LineageNode, depth: int = 0) -> NodeView:
    graph = f"{base}/governance/lineage/{segment(node.id)}"
    return NodeView(node.id, node.type, node.label, node_href(base, node), graph, depth)


def _walk(graph: LineageGraph, upstream: bool) -> dict[str, int]:
    """Distance of every node reached from the root, against (upstream) or along the edges."""
    step: dict[str, list[str]] = {}
    for e in graph.edges:
        src, dst = (e.target, e.source) if upstream else (e.source, e.target)
        step.setdefault(src, []).append(dst)
    depth = {graph.root: 0}
    frontier = [graph.root]
    while frontier:
        nxt = []
        for node in frontier:
            for other in step.get(node, ()):
                if other not in depth:
                    depth[other] = depth[node] + 1
                    nxt.append(other)
        frontier = nxt
    del depth[graph.root]
    return depth


def lineage_view(c: Container, base: str, entity_id: str) -> dict[str, Any]:
    """The graph of ``entity_id`` split into upstream and downstream rows, and its edges."""
    graph = c.governance.lineage(entity_id, "both")
    nodes = {n.id: n for n in graph.nodes}
    views = {n.id: node_view(base, n) for n in graph.nodes}

    def side(upstream: bool) -> list[NodeView]:
        found = _walk(graph, upstream)
        rows = [node_view(base, nodes[i], d) for i, d in found.items() if i in nodes]
        return sorted(rows, key=lambda v: (v.depth, v.kind, v.label))

    edges = [(views.get(e.source), e.relation, views.get(e.target)) for e in graph.edges]
    return {
        "root": views.get(graph.root),
        "upstream": side(True),
        "downstream": side(False),
        "edges": [(s, r, t) for s, r, t in edges if s is not None and t is not None],
    }


# --- audit entries ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditView:
    """An audit entry with a one-line summary of what changed and links to filter by it."""

    entry: AuditEntry
    changes: list[str]
    entity_href: str
    graph: str | None
    actor_href: str


def _brief(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:60] + "…"


def summarize(entry: AuditEntry) -> list[str]:
    """Fields that changed (``stage: none → production``); a creation lists nothing."""
    before, after = entry.before or {}, entry.after or {}
    if entry.before is None:
        # A creation's row is long (the details hold it); a first alias move is short.
        if entry.action.endswith(".create") or entry.action.endswith(".request"):
            return []
        return [f"{k}: {_brief(v)}" for k, v in list(after.items())[:4]]
    keys = [k for k in after if before.get(k) != after.get(k)]
    keys += [k for k in before if k not in after]
    return [f"{k}: {_brief(before.get(k))} → {_brief(after.get(k))}" for k in keys[:6]]


def audit_view(base: str, entry: AuditEntry) -> AuditView:
    page = f"{base}/governance"
    graph = None
    # Pointer entries name "<owner id>:<alias>", which is no node of the graph.
    if ENTITY_ID.match(entry.entity_id) and entity_of(entry.entity_id) in LINEAGE_KINDS:
        graph = f"{page}/lineage/{segment(entry.entity_id)}"
    return AuditView(
        entry=entry,
        changes=summarize(entry),
        entity_href=f"{page}?{urlencode({'entity_id': entry.entity_id})}",
        graph=graph,
        actor_href=f"{page}?{urlencode({'actor': entry.actor})}",
    )


# --- pages -----------------------------------------------------------------------------------


def approval_links(base: str, a: ApprovalPublic) -> tuple[str, str]:
    """Links to the owner (model or prompt) and to the version the approval would point at."""
    if a.kind == "model_alias":
        owner = f"{base}/models/{segment(a.name)}"
        return owner, f"{owner}/versions/{a.version}"
    owner = f"{base}/prompts/{segment(a.name)}"
    return owner, owner


def _decided(c: Container, limit: int) -> list[ApprovalPublic]:
    both = c.governance.list_approvals("approved", limit)
    both += c.governance.list_approvals("rejected", limit)
    both.sort(key=lambda a: a.decided_at or a.created_at, reverse=True)
    return both[:limit]


def _query(base: str, params: dict[str, Any], **changes: Any) -> str:
    """This page's address with ``params`` (defaults left out) and ``changes`` applied."""
    merged = {**params, **changes}
    kept = {k: v for k, v in merged.items() if v not in ("", None) and v != DEFAULTS.get(k)}
    return f"{base}/governance" + (f"?{urlencode(kept)}" if kept else "")


def _more(base: str, shown: int, limit: int, params: dict[str, Any], key: str) -> str | None:
    """A "show more" link (twice the limit) when a list filled its limit."""
    if shown < limit or limit >= MORE_CAP:
        return None
    return _query(base, params, **{key: min(limit * 2, MORE_CAP)})


@router.get("/governance")
def governance(
    request: Request,
    c: ContainerPage,
    actor: ActorPage,
    base: Base,
    entity_id: Annotated[str, Query(max_length=200)] = "",
    who: Annotated[str, Query(alias="actor", max_length=128)] = "",
    before_id: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Limit = 50,
    pending: Annotated[int, Query(ge=1, le=MORE_CAP)] = 50,
    decided: Annotated[int, Query(ge=1, le=MORE_CAP)] = 20,
) -> HTMLResponse:
    entity_id, who = entity_id.strip(), who.strip()
    waiting = c.governance.list_approvals("pending", pending)
    done = _decided(c, decided)
    # Newest first: what just happened is what a person opens the log for.
    entries = c.governance.audit(entity_id or None, limit, 0, who or None, before_id=before_id)
    params = {"entity_id": entity_id, "actor": who, "limit": limit, "pending": pending,
              "decided": decided, "before_id": before_id}  # fmt: skip
    last = entries[-1].id if len(entries) >= limit else None
    return render(
        request,
        "governance/index.html",
        section="governance",
        can_decide=ROLE_RANK.get(actor.role, -1) >= ROLE_RANK["admin"],
        # Four eyes: the form is hidden on one's own request (the service refuses it anyway).
        own_blocked=None if c.governance.allow_self_approval else actor.name,
        pending=[(a, *approval_links(base, a)) for a in waiting],
        more_pending=_more(base, len(waiting), pending, params, "pending"),
        decided=[(a, *approval_links(base, a)) for a in done],
        more_decided=_more(base, len(done), decided, params, "decided"),
        entries=[audit_view(base, e) for e in entries],
        filters={"entity_id": entity_id, "actor": who, "limit": limit},
        filtered=bool(entity_id or who),
        first_page=_query(base, params, before_id=0) if before_id else None,
        next_page=_query(base, params, before_id=last) if last is not None else None,
    )


def _decide(
    request: Request, c: Container, actor: Actor, approval_id: str, approve: bool, comment: str
) -> Response:
    # Only admins decide (the service checks it too); anyone else gets the 403 page.
    actor.require("admin")
    back = f"{ui_base(request)}/governance"
    if len(comment) > MAX_COMMENT:
        message = f"the comment is over {MAX_COMMENT:,} characters"
        return redirect(request, back, message, error=True)
    try:
        done = c.governance.decide(approval_id, approve, actor, comment.strip())
    except LlmloopError as exc:
        return redirect(request, back, exc.detail, error=True)
    what = "approved: the alias or label now points there" if approve else "rejected"
    return redirect(request, back, f"{done.name} {done.label} → v{done.version} {what}.")


@router.post("/governance/approvals/{approval_id}/approve", dependencies=[FormGuard])
def approve(
    request: Request,
    c: ContainerPage,
    actor: ActorPage,
    approval_id: Annotated[str, Path(max_length=200)],
    comment: Annotated[str, Form()] = "",
) -> Response:
    return _decide(request, c, actor, approval_id, True, comment)


@router.post("/governance/approvals/{approval_id}/reject", dependencies=[FormGuard])
def reject(
    request: Request,
    c: ContainerPage,
    actor: ActorPage,
    approval_id: Annotated[str, Path(max_length=200)],
    comment: Annotated[str, Form()] = "",
) -> Response:
    return _decide(request, c, actor, approval_id, False, comment)


@router.get("/governance/lineage")
def find_lineage(
    request: Request,
    actor: ActorPage,
    base: Base,
    entity_id: Annotated[str, Query(max_length=200)] = "",
) -> Response:
    """The lookup form's target: on to the graph page of the id typed in."""
    if not entity_id.strip():
        message = "type an entity id to see its lineage"
        return redirect(request, f"{base}/governance", message, error=True)
    return redirect(request, f"{base}/governance/lineage/{segment(entity_id.strip())}")


@router.get("/governance/lineage/{entity_id}")
def lineage(
    request: Request,
    c: ContainerPage,
    actor: ActorPage,
    base: Base,
    entity_id: Annotated[str, Path(max_length=200)],
) -> HTMLResponse:
    view = lineage_view(c, base, entity_id)
    entries = c.governance.audit(entity_id, 50)
    return render(
        request,
        "governance/lineage.html",
        section="governance",
        entity_id=entity_id,
        audit=[audit_view(base, e) for e in entries],
        audit_href=_query(base, {"entity_id": entity_id}),
        **view,
    )
