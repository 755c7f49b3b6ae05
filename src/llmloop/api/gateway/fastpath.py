"""A pure-ASGI fast path for the hot OpenAI routes, in front of FastAPI.

FastAPI's route matching walks every route of the app on each request (about a third of a
millisecond here), and its middleware stack (error, telemetry and body-limit layers, which read
the environment on every request) costs more again; the gateway's overhead budget is smaller than
that. :class:`GatewayApp` (the app ``create_app`` builds) sends ``POST /v1/chat/completions``,
``/v1/completions``, ``/v1/responses`` and ``/v1/embeddings`` through the body size limit
straight to :class:`GatewayFastPath`, which calls the same handlers the router declares
(``routes.py``) and answers their errors through the same problem handlers
(``api/problems.py``), so behaviour is identical either way. Everything else goes through
FastAPI untouched; middleware added to the app with ``add_middleware`` does not see the hot
routes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from llmloop.api.gateway import routes
from llmloop.api.limits import BodySizeLimit, BodyTooLarge

Handler = Callable[[Request], Awaitable[Response]]

HOT: dict[str, Handler] = {
    "/v1/chat/completions": routes.chat_completions,
    "/v1/completions": routes.completions,
    "/v1/responses": routes.create_response,
    "/v1/embeddings": routes.embeddings,
}


def _hot(scope: Scope) -> Handler | None:
    """The hot handler of an HTTP request's path, below the root path a reverse proxy serves
    the app under (``llmloop serve --root-path``), if any."""
    path: str = scope["path"]
    root = scope.get("root_path")
    if root and path.startswith(root):
        path = path[len(root) :]
    return HOT.get(path)


class GatewayFastPath:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = _hot(scope) if scope["type"] == "http" else None
        if handler is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            response = await handler(request)
        except BodyTooLarge:
            raise  # the body limit outside answers 413
        except Exception as exc:
            response = await _answer(request, exc)
        await response(scope, receive, send)


async def _answer(request: Request, exc: Exception) -> Response:
    """The app's own exception handler for ``exc`` (most specific class first)."""
    handlers = request.app.exception_handlers
    for cls in type(exc).__mro__:
        handler = handlers.get(cls)
        if handler is not None:
            response: Response = await handler(request, exc)
            return response
    raise exc


class GatewayApp(FastAPI):
    """FastAPI with the hot gateway routes answered before its middleware stack."""

    fast_path: ASGIApp | None = None

    def enable_fast_path(self, max_body_bytes: int) -> None:
        self.fast_path = BodySizeLimit(GatewayFastPath(self._not_hot), max_bytes=max_body_bytes)

    async def _not_hot(self, scope: Scope, receive: Receive, send: Send) -> None:
        await FastAPI.__call__(self, scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fast = self.fast_path
        if (
            fast is not None
            and scope["type"] == "http"
            and scope["method"] == "POST"
            and _hot(scope) is not None
        ):
            scope["app"] = self
            if self.root_path:
                scope["root_path"] = self.root_path
            await fast(scope, receive, send)
            return
        await super().__call__(scope, receive, send)
