"""Dashboard pages of prompts: the list, a prompt's versions with a diff between two of them,
forms to add a version and move a label, and a playground that renders a version and can send
it to a deployment through the gateway, in process, as the signed-in key.

Templates are checked, stored and rendered by the prompt service; the playground's answer comes
from the gateway service, which admits, limits and traces it exactly as a ``/v1`` request. This
module only parses forms and shows results; it never touches an engine itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Form, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from llmloop.core.base import LABEL_PATTERN, JsonDict
from llmloop.core.chat import ChatMessage, GenerationRequest, SamplingParams
from llmloop.core.deployments import DeploymentPublic
from llmloop.core.prompts import PromptCreate, PromptPublic, PromptVersionCreate
from llmloop.core.traces import sampled
from llmloop.errors import InvalidInputError, LlmloopError, UpstreamError
from llmloop.services.actors import Actor
from llmloop.services.container import Container
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

log = logging.getLogger("llmloop.ui")
router = page_router()
SECTION = "prompts"
VAR_FIELD = "var."  # playground inputs are named var.<variable>
REF_RE = re.compile(r"^([1-9][0-9]{0,8}|[a-z][a-z0-9_-]{0,63})$")


def _url(base: str, name: str, page: str = "") -> str:
    return f"{base}/prompts/{quote(name)}{page}"


# --- list ------------------------------------------------------------------------------------


def _summary(c: Container, prompt: PromptPublic) -> JsonDict:
    latest = c.prompts.get_version(prompt.name) if prompt.latest_version else None
    return {"p": prompt, "updated": latest.created_at if latest else prompt.created_at}


@router.get("/prompts")
def list_prompts(
    request: Request, c: ContainerPage, actor: ActorPage, limit: Limit = 50, offset: Offset = 0
) -> HTMLResponse:
    items = [_summary(c, p) for p in c.prompts.list(limit, offset)]
    return render(request, "prompts/list.html", section=SECTION, items=items,
                  limit=limit, offset=offset)  # fmt: skip


@router.post("/prompts", dependencies=[FormGuard])
def create_prompt(
    request: Request,
    c: ContainerPage,
    actor: ActorPage,
    base: Base,
    name: Annotated[str, Form()] = "",
    description: Annotated[str, Form()] = "",
) -> Response:
    actor.require("editor")
    back = f"{base}/prompts"
    try:
        spec = PromptCreate(name=name.strip(), description=description.strip())
    except ValidationError as exc:
        return redirect(request, back, f"Prompt not created: {problem_text(exc, 1)}", error=True)
    try:
        c.prompts.create(spec, actor)
    except LlmloopError as exc:
        return redirect(request, back, exc.detail, error=True)
    message = f"Created prompt {spec.name}: add its first version below."
    return redirect(request, _url(base, spec.name), message)


# --- one prompt ------------------------------------------------------------------------------


def _diff_lines(text: str) -> list[tuple[str, str]]:
    """Unified diff lines with their class: add, del, hunk, meta or ctx."""
    lines = []
    for line in text.splitlines():
        if line.startswith(("+++", "---")):
            kind = "meta"
        elif line.startswith("@@"):
            kind = "hunk"
        else:
            kind = {"+": "add", "-": "del"}.get(line[:1], "ctx")
        lines.append((kind, line))
    return lines


def _diff(c: Container, name: str, a: str | None, b: str | None, latest: int | None) -> JsonDict:
    """The chosen pair (default: the two newest versions) and their diff, or why there is none."""
    if a is None and b is None and latest is not None and latest >= 2:
        a, b = str(latest - 1), str(latest)
    if not a or not b:
        return {"a": a or "", "b": b or "", "result": None, "lines": [], "error": None}
    try:
        if not (REF_RE.match(a) and REF_RE.match(b)):
            raise InvalidInputError("compare versions by number or label")
        result = c.prompts.diff(name, a, b)
    except LlmloopError as exc:
        return {"a": a, "b": b, "result": None, "lines": [], "error": exc.detail}
    return {"a": a, "b": b, "result": result, "lines": _diff_lines(result["template_diff"]),
            "error": None}  # fmt: skip


def _detail(
    c: Container, name: str, a: str | None, b: str | None, limit: int, offset: int
) -> JsonDict:
    prompt = c.prompts.get(name)
    versions = list(reversed(c.prompts.list_versions(name)))  # newest first
    by_version: dict[int, list[str]] = {}
    for label, number in sorted(prompt.labels.items()):
        by_version.setdefault(number, []).append(label)
    latest = versions[0] if versions else None
    form = {
        "template": latest.template if latest else "",
        "variables": "",
        "params": json.dumps(latest.params, indent=2) if latest and latest.params else "",
        "message": "",
    }
    return {
        "prompt": prompt,
        "versions": versions,
        "page": versions[offset : offset + limit],
        "labels_of": by_version,
        "label_choices": sorted({"production", "staging", *prompt.labels}),
        "diff": _diff(c, name, a, b, prompt.latest_version),
        "form": form,
        "form_error": None,
        "limit": limit,
        "offset": offset,
    }


@router.get("/prompts/{name:path}/playground")
def playground(
    name: str, request: Request, c: ContainerPage, actor: ActorPage, ref: str | None = None
) -> HTMLResponse:
    ctx = _playground_state(c, name, ref)
    params = ctx["pv"].params if ctx["pv"] else {}
    ctx.update(values={}, json_values=False, max_tokens=str(params.get("max_tokens", 256)),
               temperature=str(params.get("temperature", 1.0)))  # fmt: skip
    return render(request, "prompts/playground.html", section=SECTION, **ctx)


@router.post("/prompts/{name:path}/playground", dependencies=[FormGuard])
async def playground_submit(
    name: str, request: Request, c: ContainerPage, actor: ActorPage
) -> HTMLResponse:
    """Render (and with ``action=run``, answer) a version. Async, unlike the other pages: the
    gateway is async and its engines live on the server's event loop; the synchronous service
    calls go to a worker thread."""
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    ctx = await asyncio.to_thread(_playground_state, c, name, form.get("ref") or None)
    names = ctx["pv"].variables if ctx["pv"] else []
    ctx.update(
        values={v: form.get(VAR_FIELD + v, "") for v in names},
        json_values=form.get("json_values") == "on",
        max_tokens=form.get("max_tokens", "256"),
        temperature=form.get("temperature", "1.0"),
        chosen=form.get("deployment", ""),
    )
    status = 200
    try:
        if ctx["pv"] is None:
            raise InvalidInputError("this prompt has no versions yet: add one first")
        variables = _variables(ctx["values"], ctx["json_values"])
        number = ctx["pv"].version
        ctx["rendered"] = await asyncio.to_thread(c.prompts.render, name, variables, number)
        if form.get("action") == "run":
            ctx["answer"] = await _run(c, actor, ctx, form)
    except LlmloopError as exc:
        ctx["error"], status = exc.detail, exc.status
    return render(request, "prompts/playground.html", status, section=SECTION, **ctx)


def _playground_state(c: Container, name: str, ref: str | None) -> JsonDict:
    """The prompt, the chosen version (by number, label or 'latest'), deployments to run on."""
    prompt = c.prompts.get(name)
    if ref is None:
        ref = "production" if "production" in prompt.labels else "latest"
    if not REF_RE.match(ref):
        raise InvalidInputError("choose a version by number, a label, or 'latest'")
    version = c.prompts.get_version(name, ref) if prompt.latest_version else None
    deployments = c.deployments.list()
    return {
        "prompt": prompt,
        "versions": list(reversed(c.prompts.list_versions(name))),
        "ref": ref,
        "pv": version,  # not "version": base.html shows the llmloop version
        "deployments": deployments,
        "chosen": deployments[0].name if deployments else "",
        "rendered": None,
        "answer": None,
        "error": None,
    }


def _variables(values: dict[str, str], as_json: bool) -> JsonDict:
    """The form's variable values: text, or JSON when the box is ticked."""
    if not as_json:
        return dict(values)
    parsed: JsonDict = {}
    for key, raw in values.items():
        try:
            parsed[key] = json.loads(raw)
        except ValueError as exc:
            raise InvalidInputError(f"variable '{key}' is not valid JSON: {exc}")
    return parsed


def _sampling(params: JsonDict, form: dict[str, str]) -> SamplingParams:
    """The version's sampling params, with the form's max_tokens and temperature on top."""
    try:
        max_tokens = int(form.get("max_tokens", ""))
        temperature = float(form.get("temperature", ""))
    except ValueError:
        raise InvalidInputError("max tokens must be a whole number and temperature a number")
    chosen = {k: v for k, v in params.items() if k in SamplingParams.model_fields}
    chosen.update(max_tokens=max_tokens, temperature=temperature)
    try:
        return SamplingParams.model_validate(chosen)
    except ValidationError as exc:
        raise InvalidInputError(f"sampling settings: {problem_text(exc, 1)}")


async def _run(c: Container, actor: Actor, ctx: JsonDict, form: dict[str, str]) -> JsonDict:
    """Send the rendered text as one user turn to the chosen deployment via the gateway."""
    deployments: list[DeploymentPublic] = ctx["deployments"]
    spec = next((d.spec for d in deployments if d.name == ctx["chosen"]), None)
    if spec is None:
        raise InvalidInputError("choose a deployment to run the prompt on")
    req = GenerationRequest(
        model=spec.name,
        messages=[ChatMessage(role="user", content=ctx["rendered"].text)],
        sampling=_sampling(ctx["pv"].params, form),
    )
    trace = c.gateway.new_trace("chat", spec.name, actor)
    try:
        result = await c.gateway.generate(actor, req, trace)
    except LlmloopError:
        raise
    except Exception as exc:  # an engine's own failure: a message on the page, not a 500
        log.exception("playground run on '%s' failed", spec.name)
        raise UpstreamError(f"the engine failed: {type(exc).__name__}: {exc}")
    return {
        "deployment": spec.name,
        "text": result.text,
        "finish_reason": result.finish_reason,
        "input_tokens": result.usage.prompt_tokens,
        "output_tokens": result.usage.completion_tokens,
        "latency_ms": trace.latency_ms,
        "trace_id": trace.id if sampled(trace.id, spec.trace_sample) else None,
    }


# --- forms on the prompt page ----------------------------------------------------------------


@router.post("/prompts/{name:path}/labels", dependencies=[FormGuard])
def move_label(
    name: str,
    request: Request,
    c: ContainerPage,
    actor: ActorPage,
    base: Base,
    label: Annotated[str, Form()] = "",
    version: Annotated[str, Form()] = "",
) -> Response:
    actor.require("editor")
    c.prompts.get(name)  # an unknown prompt is a 404 page, not a flash
    back = _url(base, name)
    label = label.strip()
    if not LABEL_PATTERN.match(label):
        return redirect(request, back, "A label is lower-case letters, digits, '_' or '-', "
                        "starting with a letter.", error=True)  # fmt: skip
    if not (version.strip().isascii() and version.strip().isdigit()) or int(version) < 1:
        return redirect(request, back, "Choose a version to point the label at.", error=True)
    try:
        c.prompts.set_label(name, label, int(version), actor)
    except LlmloopError as exc:
        return redirect(request, back, exc.detail, error=True)
    return redirect(request, back, f"Label '{label}' now points at version {int(version)}.")


def _version_spec(template: str, variables: str, params: str, message: str) -> PromptVersionCreate:
    """The new-version form as a PromptVersionCreate; InvalidInputError says what is wrong."""
    declared = [v for v in re.split(r"[,\s]+", variables) if v] if variables.strip() else None
    parsed: Any = {}
    if params.strip():
        try:
            parsed = json.loads(params)
        except ValueError as exc:
            raise InvalidInputError(f"model params must be a JSON object: {exc}")
        if not isinstance(parsed, dict):
            raise InvalidInputError('model params must be a JSON object, like {"temperature": 0}')
    try:
        return PromptVersionCreate(template=template, variables=declared, params=parsed,
                                   message=message.strip())  # fmt: skip
    except ValidationError as exc:
        raise InvalidInputError(problem_text(exc, 1))


@router.post("/prompts/{name:path}/versions", dependencies=[FormGuard])
def create_version(
    name: str,
    request: Request,
    c: ContainerPage,
    actor: ActorPage,
    base: Base,
    template: Annotated[str, Form()] = "",
    variables: Annotated[str, Form()] = "",
    params: Annotated[str, Form()] = "",
    message: Annotated[str, Form()] = "",
) -> Response:
    actor.require("editor")
    c.prompts.get(name)
    try:
        created = c.prompts.create_version(
            name, _version_spec(template, variables, params, message), actor, create_missing=False
        )
    except LlmloopError as exc:
        # Shown again with what was typed: a long template is not lost to a typo.
        ctx = _detail(c, name, None, None, 50, 0)
        ctx["form"] = {"template": template, "variables": variables, "params": params,
                       "message": message}  # fmt: skip
        ctx["form_error"] = exc.detail
        return render(request, "prompts/detail.html", exc.status, section=SECTION, **ctx)
    return redirect(request, _url(base, name), f"Created version {created.version}.")


@router.get("/prompts/{name:path}/versions")
def versions_anchor(name: str, request: Request, actor: ActorPage, base: Base) -> Response:
    """Reloading the page a refused version form showed lands on the prompt, not a 404."""
    return redirect(request, _url(base, name) + "#new-version")


@router.get("/prompts/{name:path}")
def prompt_page(
    name: str,
    request: Request,
    c: ContainerPage,
    actor: ActorPage,
    a: Annotated[str | None, Query(max_length=64)] = None,
    b: Annotated[str | None, Query(max_length=64)] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> HTMLResponse:
    ctx = _detail(c, name, a, b, limit, offset)
    return render(request, "prompts/detail.html", section=SECTION, **ctx)
