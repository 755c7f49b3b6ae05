"""Errors to HTTP, in one place: RFC 9457 problem JSON for the REST API, and OpenAI's error shape
(``{"error": {"message", "type", "code"}}``) for the OpenAI-compatible routes under ``/v1``, and
an HTML error page for the dashboard under ``/ui``.

No route builds an error response by hand; they raise ``llmloop.errors`` and these handlers answer.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError as PydanticValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from llmloop.errors import LlmloopError, OverloadedError, RateLimitError
from llmloop.ui import web as ui_web

log = logging.getLogger("llmloop.api")
PROBLEM_TYPE_BASE = "https://llmloop.dev/problems/"
OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_error",
    404: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    502: "api_error",
    503: "api_error",
    504: "timeout_error",
}


def _openai_code(code: str, param: Any) -> str:
    """OpenAI's codes where clients look for them: a wrong key is ``invalid_api_key``, an
    unknown model ``model_not_found``; the others are llmloop's own."""
    if code == "unauthenticated":
        return "invalid_api_key"
    if code == "not_found" and param == "model":
        return "model_not_found"
    return code


def is_openai_path(path: str) -> bool:
    return path.startswith("/v1/") or path == "/v1"


def is_dashboard_path(path: str) -> bool:
    return path.startswith(f"{ui_web.PREFIX}/") or path == ui_web.PREFIX


def problem_response(
    request: Request, status: int, code: str, title: str, detail: str, **extra: Any
) -> Response:
    headers = {}
    retry_after = extra.pop("retry_after", None)
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, round(retry_after)))
    path = ui_web.app_path(request)  # below a reverse proxy's prefix (the ASGI root_path)
    if is_dashboard_path(path):  # a person in a browser: a page, not JSON
        page = ui_web.error_page(request, status, title, detail)
        page.headers.update(headers)
        return page
    if is_openai_path(path):
        param = extra.get("param")
        body: dict[str, Any] = {
            "error": {
                "message": detail,
                "type": OPENAI_TYPES.get(status, "api_error"),
                "param": param,
                "code": _openai_code(code, param),
            }
        }
        return JSONResponse(body, status_code=status, headers=headers)
    problem = {
        "type": PROBLEM_TYPE_BASE + code,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        "code": code,
        **extra,
    }
    return JSONResponse(
        problem, status_code=status, headers=headers, media_type="application/problem+json"
    )


async def _llmloop_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LlmloopError)
    extra = {k: v for k, v in exc.extra.items() if _jsonable(v)}
    if isinstance(exc, RateLimitError | OverloadedError) and exc.retry_after is not None:
        extra["retry_after"] = exc.retry_after
    if exc.status >= 500:
        log.warning("%s %s -> %s: %s", request.method, request.url.path, exc.status, exc.detail)
    return problem_response(request, exc.status, exc.code, exc.title, exc.detail, **extra)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        errors.append({"field": ".".join(loc), "message": err.get("msg", "invalid")})
    json_broken = any(e.get("type") == "json_invalid" for e in exc.errors())
    status, code, title = (
        (400, "bad_request", "Malformed JSON")
        if json_broken
        else (422, "invalid_input", "Invalid input")
    )
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5]) or title
    param = errors[0]["field"] if errors else None
    return problem_response(request, status, code, title, detail, errors=errors, param=param)


async def _model_error(request: Request, exc: Exception) -> Response:
    """A config or spec the caller sent (inside a valid body) failed its own validation."""
    assert isinstance(exc, PydanticValidationError)
    errors = [
        {"field": ".".join(str(p) for p in e.get("loc", ())), "message": e.get("msg", "")}
        for e in exc.errors()
    ]
    detail = "; ".join(f"{e['field'] or exc.title}: {e['message']}" for e in errors[:5])
    return problem_response(
        request, 422, "invalid_input", "Invalid input", detail or str(exc), errors=errors
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    titles = {
        404: ("not_found", "Not found"),
        405: ("method_not_allowed", "Method not allowed"),
        413: ("payload_too_large", "Payload too large"),
    }
    code, title = titles.get(exc.status_code, ("http_error", "HTTP error"))
    detail = exc.detail if isinstance(exc.detail, str) else title
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no route {request.method} {request.url.path}"
    return problem_response(request, exc.status_code, code, title, detail)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem_response(
        request,
        500,
        "internal_error",
        "Internal error",
        "the server failed to handle this request; see its log",
    )


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(LlmloopError, _llmloop_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(PydanticValidationError, _model_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)


def _jsonable(value: Any) -> bool:
    return isinstance(value, str | int | float | bool | type(None) | list | dict)
