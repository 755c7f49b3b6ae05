"""REST routes of data preparation: upload-and-ingest, profile, clean, split, diff.

Ingest takes an uploaded file (multipart), streamed to a temp file; the server never reads a
path or URL named by the caller. Profiles return JSON; the HTML report is served from its own
route.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.responses import HTMLResponse
from pydantic import Field

from llmloop.api.deps import ActorDep, ContainerDep
from llmloop.api.routes.common import NamePath, RefPath
from llmloop.core.base import JsonDict, Value
from llmloop.errors import InvalidInputError

router = APIRouter(prefix="/api/data", tags=["data"])
SUFFIXES = {".jsonl", ".json", ".ndjson", ".csv", ".parquet", ".pq"}


class CleanRequest(Value):
    recipe: JsonDict = Field(description="The recipe: {name, steps: [{step, config}]}.")
    to: str | None = Field(default=None, description="Write to another dataset.")


class SplitRequest(Value):
    config: JsonDict = Field(default_factory=dict, description="Split settings.")


@router.post("/{name}/ingest", status_code=201)
async def ingest(
    name: NamePath,
    c: ContainerDep,
    actor: ActorDep,
    file: UploadFile = File(description="JSONL, CSV or Parquet file."),
    on_error: str = Form("fail", pattern="^(fail|skip)$"),
    description: str = Form("", max_length=10_000),
) -> Any:
    suffix = Path(file.filename or "").suffix.lower()
    if suffix not in SUFFIXES:
        raise InvalidInputError(f"upload a file ending in one of {sorted(SUFFIXES)}")
    tmp = c.settings.home / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(suffix=suffix, dir=tmp, delete=False) as fh:
        shutil.copyfileobj(file.file, fh)
        path = Path(fh.name)
    try:
        version, report = c.data.ingest(str(path), name, actor, {"on_error": on_error}, description)
    finally:
        path.unlink(missing_ok=True)
    return {
        "version": version.model_dump(mode="json", by_alias=True),
        "report": report.model_dump(mode="json", exclude={"source"}),
    }


@router.post("/{name}/versions/{ref}/profile")
def profile(name: NamePath, ref: RefPath, c: ContainerDep, actor: ActorDep) -> Any:
    result, _ = c.data.profile(name, actor, ref)
    return result.model_dump(mode="json")


@router.get("/{name}/versions/{ref}/report", response_class=HTMLResponse)
def report(name: NamePath, ref: RefPath, c: ContainerDep, _: ActorDep) -> Any:
    return HTMLResponse(c.data.report_html(name, ref))


@router.post("/{name}/versions/{ref}/clean", status_code=201)
def clean(
    name: NamePath, ref: RefPath, body: CleanRequest, c: ContainerDep, actor: ActorDep
) -> Any:
    version, rep = c.data.clean(name, body.recipe, actor, ref, body.to)
    return {
        "version": version.model_dump(mode="json", by_alias=True),
        "report": rep.model_dump(mode="json"),
    }


@router.post("/{name}/versions/{ref}/split", status_code=201)
def split(
    name: NamePath, ref: RefPath, body: SplitRequest, c: ContainerDep, actor: ActorDep
) -> Any:
    made, rep = c.data.split(name, actor, ref, body.config)
    return {
        "versions": {k: v.model_dump(mode="json", by_alias=True) for k, v in made.items()},
        "report": rep,
    }


@router.get("/{name}/diff")
def diff(
    name: NamePath,
    c: ContainerDep,
    _: ActorDep,
    a: str = Query(pattern=r"^([1-9][0-9]{0,8}|latest)$"),
    b: str = Query(pattern=r"^([1-9][0-9]{0,8}|latest)$"),
    key: str | None = Query(None, max_length=128),
) -> Any:
    return c.data.diff(name, a, b, key).model_dump(mode="json")
