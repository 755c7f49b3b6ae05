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

A client that goes away is noticed here: while the body is read (nothing has started, nothing is
answered) and, once the body is in, while the handler runs: the handler is cancelled, so a whole
answer (not only a stream) stops its engine and its trace says ``cancelled``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from fastapi import FastAPI
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from llmloop.api.gateway import routes
from llmloop.api.limits import BodySizeLimit

Handler = Callable[[Request], Awaitable[Response]]
log = logging.getLogger("llmloop.api")
#: How long a whole answer runs before a client's departure is watched for (and then cancels it).
WATCH_AFTER_S = 0.05

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
            await request.body()  # the handler reads it again from the request's cache
        except ClientDisconnect:  # (BodyTooLarge goes up: the body limit outside answers 413)
            log.debug("client left while sending %s", scope["path"])
            return
        departure = Departure(receive)
        try:
            response = await handler(request)
        except asyncio.CancelledError:
            if departure.left:
                departure.task.uncancel()  # our cancel, not the server's: this request is over
                return
            raise
        except Exception as exc:
            response = await _answer(request, exc)
        finally:
            departure.stop()
        if departure.left:
            return
        await response(scope, receive, send)


class Departure:
    """Cancels the current task when the client disconnects (after its body was read).

    uvicorn does not cancel a request whose client left; without this, a whole answer would run
    to its last token for nobody. The watch starts :data:`WATCH_AFTER_S` into the handler: most
    answers are done by then, and a timer costs them a microsecond where a watching task cost
    over ten. A stream watches for itself once it is answered (``SSEResponse``), so this stops
    when the handler returns.
    """

    __slots__ = ("_receive", "_timer", "_watcher", "left", "task")

    def __init__(self, receive: Receive) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.task = task
        self.left = False
        self._receive = receive
        self._watcher: asyncio.Task[None] | None = None
        self._timer = asyncio.get_running_loop().call_later(WATCH_AFTER_S, self._start)

    def _start(self) -> None:
        self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass  # nothing but the disconnect comes once the body was read
        self.left = True
        self.task.cancel()

    def stop(self) -> None:
        self._timer.cancel()
        if self._watcher is not None:
            self._watcher.cancel()


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
