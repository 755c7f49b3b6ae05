"""REST routes of data preparation: upload-and-ingest, profile, clean, split, diff.

Ingest takes an uploaded file (multipart), streamed to a temp file in a worker thread; the server
never reads a path or URL named by the caller, and messages and lineage name the upload, not the
temp file. Profiles return JSON; the HTML report is served from its own
route.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse
from pydantic import Field

from llmloop.api.deps import ActorDep, ContainerDep
from llmloop.api.routes.common import NamePath, RefPath
from llmloop.core.base import JsonDict, Value
from llmloop.errors import InvalidInputError

router = APIRouter(prefix="/api/data", tags=["data"])
SUFFIXES = {".jsonl", ".json", ".ndjson", ".csv", ".tsv", ".parquet", ".pq"}
COMPRESSIONS = {".gz", ".bz2", ".xz", ".zst"}
# Report pages hold user rows (escaped): a browser may not run or fetch anything from them.
REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'"


class CleanRequest(Value):
    recipe: JsonDict = Field(description="The recipe: {name, steps: [{step, config}]}.")
    to: str | None = Field(default=None, description="Write to another dataset.")


class SplitRequest(Value):
    config: JsonDict = Field(default_factory=dict, description="Split settings.")


def upload_suffix(filename: str) -> str:
    """The format suffix of an uploaded file's name, with its compression suffix if any
    (``.jsonl``, ``.csv.gz``); anything else is refused before a byte is stored."""
    suffixes = [s.lower() for s in PurePosixPath(filename).suffixes]
    if suffixes and suffixes[-1] in COMPRESSIONS:
        suffixes = suffixes[-2:]
        if len(suffixes) == 2 and suffixes[0] in SUFFIXES:
            return "".join(suffixes)
    elif suffixes and suffixes[-1] in SUFFIXES:
        return suffixes[-1]
    raise InvalidInputError(
        f"upload a file ending in one of {sorted(SUFFIXES)}, optionally compressed "
        f"({', '.join(sorted(COMPRESSIONS))}); got {filename!r}"
    )


@router.post("/{name}/ingest", status_code=201)
async def ingest(
    name: NamePath,
    c: ContainerDep,
    actor: ActorDep,
    file: UploadFile = File(description="JSONL, CSV/TSV or Parquet file, optionally gzip'd."),
    on_error: str = Form("fail", pattern="^(fail|skip)$"),
    description: str = Form("", max_length=10_000),
    encoding: str = Form("utf-8", max_length=40, description="Text encoding of JSONL/CSV."),
    delimiter: str | None = Form(None, min_length=1, max_length=1, description="CSV separator."),
) -> Any:
    filename = PurePosixPath(file.filename or "").name
    suffix = upload_suffix(filename)
    options = {"on_error": on_error, "encoding": encoding, "delimiter": delimiter}

    def run() -> Any:  # file copy and ingest block: a worker thread keeps the server answering
        tmp = c.settings.home / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(suffix=suffix, dir=tmp, delete=False) as fh:
            shutil.copyfileobj(file.file, fh)
            path = Path(fh.name)
        try:
            return c.data.ingest(str(path), name, actor, options, description, source_name=filename)
        finally:
            path.unlink(missing_ok=True)

    version, report = await run_in_threadpool(run)
    return {
        "version": version.model_dump(mode="json", by_alias=True),
        "report": report.model_dump(mode="json"),
    }


@router.post("/{name}/versions/{ref}/profile")
def profile(name: NamePath, ref: RefPath, c: ContainerDep, actor: ActorDep) -> Any:
    result, _ = c.data.profile(name, actor, ref)
    return result.model_dump(mode="json")


@router.get("/{name}/versions/{ref}/report", response_class=HTMLResponse)
def report(name: NamePath, ref: RefPath, c: ContainerDep, _: ActorDep) -> Any:
    return HTMLResponse(
        c.data.report_html(name, ref), headers={"Content-Security-Policy": REPORT_CSP}
    )


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
