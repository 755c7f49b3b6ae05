"""Dashboard pages of datasets: the list, a dataset's versions with their lineage, one version's
metadata, row preview and profile, and the EDA report itself.

Rows are previewed by streaming the version's artifact only as far as the page needs; nothing
here loads a whole version. The one action is profiling a version (the data service does the
work and stores the report); cleaning, splitting and ingesting stay in the CLI and REST API.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse, Response

from llmloop.core.base import JsonDict
from llmloop.core.datasets import DatasetPublic, DatasetVersionPublic
from llmloop.errors import LlmloopError
from llmloop.services.container import Container
from llmloop.ui.web import (
    SECURITY_HEADERS,
    ActorPage,
    Base,
    ContainerPage,
    FormGuard,
    Limit,
    Offset,
    page_router,
    redirect,
    render,
)

router = page_router()
SECTION = "datasets"
CELL_CHARS = 160  # a preview cell longer than this is cut; its title holds more
TITLE_CHARS = 2000
REPORT_KEY = "report_artifact"  # where DataService.profile stores the report's artifact

# The EDA report is a whole document made by data/report.py: a <style> element, style
# attributes and inline SVG, no scripts, no images, nothing fetched. Allow exactly that.
REPORT_HEADERS = {
    **SECURITY_HEADERS,
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; "
        "form-action 'none'; base-uri 'none'"
    ),
}


def _version_url(base: str, name: str, version: int) -> str:
    return f"{base}/datasets/{quote(name)}/versions/{version}"


# --- list ------------------------------------------------------------------------------------


def _summary(c: Container, ds: DatasetPublic) -> JsonDict:
    """One list row: the dataset and its latest version (rows, when it was made)."""
    latest = c.datasets.get_version(ds.name) if ds.latest_version else None
    return {
        "ds": ds,
        "rows": latest.row_count if latest else None,
        "updated": latest.created_at if latest else ds.created_at,
    }


@router.get("/datasets")
def list_datasets(
    request: Request, c: ContainerPage, actor: ActorPage, limit: Limit = 50, offset: Offset = 0
) -> HTMLResponse:
    items = [_summary(c, ds) for ds in c.datasets.list(limit, offset)]
    return render(request, "datasets/list.html", section=SECTION, items=items,
                  limit=limit, offset=offset)  # fmt: skip


# --- one version -----------------------------------------------------------------------------


def _neighbours(
    c: Container, base: str, version: DatasetVersionPublic, direction: str
) -> list[JsonDict]:
    """The versions (and other entities) one lineage edge up or down from ``version``."""
    graph = c.governance.lineage(version.id, direction, depth=1)
    relation = {e.target if direction == "down" else e.source: e.relation for e in graph.edges}
    found = []
    for node in graph.nodes:
        if node.id == version.id or node.id not in relation:
            continue
        link = None
        if node.type == "dataset_version":
            other = c.datasets.get_version_by_id(node.id)
            link = _version_url(base, other.dataset_name, other.version)
        found.append({"label": node.label, "type": node.type, "relation": relation[node.id],
                      "url": link})  # fmt: skip
    return found


def _cell(value: Any) -> JsonDict:
    """A preview cell: strings as they are, anything else as compact JSON; long text cut."""
    text = (
        value
        if isinstance(value, str)
        else json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    )
    cut = len(text) > CELL_CHARS
    return {
        "text": text[:CELL_CHARS] + "…" if cut else text,
        "title": text[:TITLE_CHARS] if cut else "",
        "null": value is None,
        "json": not isinstance(value, str),
    }


def _preview(c: Container, version: DatasetVersionPublic, offset: int, limit: int) -> JsonDict:
    """Rows ``offset`` .. ``offset + limit`` of a version, read no further than needed."""
    rows: list[JsonDict] = []
    seen = 0
    batches = c.data.batches(version, batch_size=min(10_000, offset + limit))
    try:
        for batch in batches:
            rows += batch[max(0, offset - seen) : max(0, offset + limit - seen)]
            seen += len(batch)
            if seen >= offset + limit:
                break
    finally:
        close = getattr(batches, "close", None)  # stop reading the artifact now
        if close is not None:
            close()
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    table = [[_cell(row[k]) if k in row else None for k in columns] for row in rows]
    return {"columns": list(columns), "rows": table, "count": len(rows)}


def _profile_summary(profile: JsonDict | None) -> JsonDict | None:
    """The headline facts of a stored profile (JSON written by DataService.profile)."""
    if not profile:
        return None
    chars, tokens = profile.get("chars") or {}, profile.get("tokens") or {}
    findings = [
        {
            "name": name,
            "count": f.get("count", 0),
            "rate": 100.0 * float(f.get("rate", 0.0)),
            "estimated": bool(f.get("estimated")),
        }
        for name, f in sorted((profile.get("findings") or {}).items())
        if isinstance(f, dict)
    ]
    languages = sorted((profile.get("languages") or {}).items(), key=lambda kv: -kv[1])[:8]
    return {
        "stats": [
            ("rows", profile.get("row_count")),
            ("shape", profile.get("shape", "-")),
            ("tokenizer", profile.get("tokenizer", "-")),
            ("chars mean / p90 / max", _triple(chars)),
            ("tokens mean / p90 / max", _triple(tokens)),
        ],
        "findings": findings,
        "languages": [(code, 100.0 * float(share)) for code, share in languages],
        "pii": sorted((profile.get("pii_counts") or {}).items()),
        "notes": [str(n) for n in profile.get("notes") or []],
        "report": bool(profile.get(REPORT_KEY)),
    }


def _triple(stats: JsonDict) -> str:
    parts = (stats.get("mean"), stats.get("p90"), stats.get("max"))
    return " / ".join("-" if p is None else f"{float(p):,.1f}".removesuffix(".0") for p in parts)


@router.get("/datasets/{name:path}/versions/{version}/report")
def version_report(name: str, version: str, request: Request, c: ContainerPage,
                   actor: ActorPage) -> Response:  # fmt: skip
    """The stored EDA report, as the profiler wrote it, under a CSP fitted to it."""
    dv = c.datasets.get_version(name, version)
    stored = (dv.profile or {}).get(REPORT_KEY)
    if not stored:
        return render(request, "datasets/no_report.html", status=404, section=SECTION, v=dv)
    return HTMLResponse(c.data.report_html(name, dv.version), headers=REPORT_HEADERS)


@router.post("/datasets/{name:path}/versions/{version}/profile", dependencies=[FormGuard])
def profile_version(
    name: str, version: str, request: Request, c: ContainerPage, actor: ActorPage, base: Base
) -> Response:
    actor.require("editor")
    dv = c.datasets.get_version(name, version)
    back = _version_url(base, name, dv.version)
    try:
        c.data.profile(name, actor, dv.version)
    except LlmloopError as exc:
        return redirect(request, back, exc.detail, error=True)
    return redirect(request, back, f"Profiled {name} v{dv.version}.")


@router.get("/datasets/{name:path}/versions/{version}")
def version_page(
    name: str,
    version: str,
    request: Request,
    c: ContainerPage,
    actor: ActorPage,
    base: Base,
    limit: Limit = 50,
    offset: Offset = 0,
) -> HTMLResponse:
    dv = c.datasets.get_version(name, version)
    return render(
        request,
        "datasets/version.html",
        section=SECTION,
        v=dv,
        preview=_preview(c, dv, offset, limit),
        profile=_profile_summary(dv.profile),
        upstream=_neighbours(c, base, dv, "up"),
        downstream=_neighbours(c, base, dv, "down"),
        limit=limit,
        offset=offset,
    )


# --- one dataset -----------------------------------------------------------------------------


def _lineage_of(c: Container, base: str, dv: DatasetVersionPublic) -> JsonDict:
    """How a version was made: the recipe step and the versions it came from."""
    recipe = dv.recipe or {}
    step = recipe.get("step") if isinstance(recipe.get("step"), str) else None
    if step == "split" and isinstance(recipe.get("split"), str):
        step = f"split ({recipe['split']})"
    return {"step": step, "parents": _neighbours(c, base, dv, "up")}


@router.get("/datasets/{name:path}")
def dataset_page(
    name: str,
    request: Request,
    c: ContainerPage,
    actor: ActorPage,
    base: Base,
    limit: Limit = 50,
    offset: Offset = 0,
) -> HTMLResponse:
    ds = c.datasets.get(name)
    versions = list(reversed(c.datasets.list_versions(name)))  # newest first
    page = versions[offset : offset + limit]
    rows = [{"v": v, "lineage": _lineage_of(c, base, v)} for v in page]
    return render(request, "datasets/detail.html", section=SECTION, ds=ds, rows=rows,
                  total=len(versions), limit=limit, offset=offset)  # fmt: skip
