"""The dashboard's machinery: page routes, sign-in by API key, templates and the error page.

Pages are server-rendered HTML (Jinja2, autoescaped) under ``/ui``; a page is a plain function
that calls services and returns :func:`render`. A browser cannot send ``Authorization`` headers,
so signing in stores the API key in an HttpOnly, ``SameSite=Strict`` cookie; every page
authenticates it again through the key service, so revoking a key signs its browser out. Forms
that change something are POSTs: a strict cookie never rides on a cross-site request, and the
``Origin`` check refuses one that tries.

Behind a reverse proxy that serves llmloop under a path prefix (``llmloop serve --root-path
/llmloop``, the ASGI ``root_path``), every address a page prints or redirects to, and the
cookies' paths, start with that prefix: pages build addresses from :func:`ui_base` (the ``Base``
dependency), never from ``PREFIX`` alone; templates from ``prefix`` (the dashboard) and
``root_path`` (the server, for ``/v1``, ``/api`` and ``/health``).

What this module does not do: decide anything (services do) or know any noun's page.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import quote, unquote, urlsplit

from fastapi import Depends, FastAPI, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute, APIRouter
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup
from pydantic import ValidationError
from starlette.staticfiles import StaticFiles

from llmloop import __version__
from llmloop.errors import AuthenticationError, PermissionDeniedError
from llmloop.services.actors import Actor
from llmloop.services.container import Container

log = logging.getLogger("llmloop.ui")
COOKIE = "llmloop_key"
FLASH_COOKIE = "llmloop_flash"
PREFIX = "/ui"


class SignInRequired(Exception):
    """Raised by :func:`page_actor`; the page route answers with a redirect to the sign-in page."""


class PageRoute(APIRoute):
    """Sends a visitor who is not signed in to the sign-in page (and back afterwards).

    Other errors reach the app's handlers (``api/problems.py``), which answer any path under
    ``/ui`` with :func:`error_page` at the error's status instead of problem JSON.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInRequired:
                target = root_path(request) + app_path(request)
                target += f"?{request.url.query}" if request.url.query else ""
                login = f"{ui_base(request)}/login?next={quote(target)}"
                return RedirectResponse(login, status_code=303)

        return page_handler


def page_router() -> APIRouter:
    """A router for one noun's pages (mounted under ``/ui`` by :func:`install`)."""
    return APIRouter(route_class=PageRoute, include_in_schema=False)


def root_path(request: Request) -> str:
    """The path prefix a reverse proxy serves llmloop under (ASGI ``root_path``), or "".

    Inside a mount (the static files) Starlette extends ``root_path`` with the mount's path and
    keeps the server's in ``app_root_path``.
    """
    scope = request.scope
    return str(scope.get("app_root_path", scope.get("root_path", ""))).rstrip("/")


def app_path(request: Request) -> str:
    """The request's path below the root path: what the routes match (``/ui/models``)."""
    path, root = request.scope["path"], root_path(request)
    if root and (path == root or path.startswith(f"{root}/")):
        return path[len(root) :] or "/"
    return str(path)


def ui_base(request: Request) -> str:
    """The dashboard's address for this request: ``/ui`` below the root path (``/llmloop/ui``)."""
    return root_path(request) + PREFIX


def container_of(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


def page_actor(request: Request) -> Actor:
    """The signed-in actor, from the key in the cookie; SignInRequired when there is none."""
    cached = getattr(request.state, "ui_actor", None)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    secret = request.cookies.get(COOKIE)
    if not secret:
        raise SignInRequired
    try:
        actor = container_of(request).keys.authenticate(secret)
    except AuthenticationError:
        raise SignInRequired from None
    request.state.ui_actor = actor
    return actor


def same_origin(request: Request) -> None:
    """Refuse a state-changing request whose ``Origin`` is another site (defence in depth).

    The site is the ``Host`` the browser sent, or the ``X-Forwarded-Host`` a reverse proxy that
    rewrites ``Host`` adds (a cross-site form cannot set that header, so trusting it is safe).
    """
    origin = request.headers.get("origin")
    if origin and origin != "null":
        hosts = {request.headers.get("host", "")}
        forwarded = request.headers.get("x-forwarded-host")
        if forwarded:
            hosts.add(forwarded.split(",")[0].strip())
        if urlsplit(origin).netloc not in hosts:
            raise PermissionDeniedError("this form was posted from another site")


ContainerPage = Annotated[Container, Depends(container_of)]
Base = Annotated[str, Depends(ui_base)]
ActorPage = Annotated[Actor, Depends(page_actor)]
FormGuard = Depends(same_origin)


# --- templates -----------------------------------------------------------------------------


def _ago(value: datetime | None) -> str:
    if value is None:
        return "-"
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    seconds = (datetime.now(UTC) - value).total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if abs(seconds) >= size:
            return f"{int(seconds // size)} {unit} ago"
    return "just now" if seconds >= 0 else "soon"


def _when(value: datetime | None) -> str:
    if value is None:
        return "-"
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _num(value: float | int | None, digits: int = 3) -> str:
    """A number for a table: thousands separated, floats to ``digits`` significant digits."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int) or (float(value).is_integer() and abs(value) < 1e15):
        return f"{int(value):,}"
    text = f"{value:,.{digits}g}" if abs(value) < 1e4 else ""
    # "g" writes 1234.5 to 3 digits as 1.23e+03: a number that big keeps its integer digits.
    return f"{value:,.0f}" if not text or "e+" in text else text


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)


def _compact(value: Any) -> str:
    """JSON on one line, text as it is: Jinja's ``tojson`` writes ``<``, ``'`` and ``&`` as
    ``\\u003c``-style escapes (for scripts), which a page that escapes its text shows raw."""
    return json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)


def _clip(value: object, n: int = 80) -> str:
    """``value`` cut to ``n`` characters with an ellipsis, at a space near the end if there is
    one. Jinja's ``truncate`` keeps whole words only, so a message in Chinese or one long URL
    after ``user:`` left nothing but ``user:...``."""
    text = "" if value is None else str(value)
    if len(text) <= n:
        return text
    cut = text[: n - 1]
    space = cut.rfind(" ")
    if space >= n * 2 // 3:
        cut = cut[:space]
    return cut.rstrip() + "…"


def _segment(value: object, safe: str = "") -> str:
    """``value`` quoted as one URL path segment or query value (``/`` included)."""
    return quote(str(value), safe=safe)


def _short(value: str | None, n: int = 12) -> str:
    return "-" if not value else value if len(value) <= n else value[:n] + "…"


def problem_text(
    exc: ValidationError,
    limit: int = 4,
    default_field: str = "",
    names: dict[str, str] | None = None,
) -> str:
    """A pydantic error as one line a person can act on: its first ``limit`` problems, each
    as ``field: message`` (pydantic's "Value error, " prefix dropped); ``names`` renames a
    model's field to what the form calls it."""
    parts = []
    for err in exc.errors()[:limit]:
        field = ".".join(str(p) for p in err.get("loc", ())) or default_field
        field = (names or {}).get(field, field)
        message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{field}: {message}" if field else message)
    return "; ".join(parts) or "invalid input"


# Paging of the list pages: a page of at most 500 rows.
Limit = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0, le=10_000_000)]


def _build_env() -> Environment:
    env = Environment(
        loader=PackageLoader("llmloop.ui", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(ago=_ago, when=_when, num=_num, pretty=_pretty, compact=_compact,
                       clip=_clip, short=_short, urlq=_segment)  # fmt: skip
    env.globals.update(app_version=__version__)
    return env


_env: Environment | None = None


def templates() -> Environment:
    global _env
    if _env is None:
        _env = _build_env()
    return _env


# Pages render only what this server sends: no inline scripts, no third-party anything, no frames.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}

NAV = (
    ("overview", "Overview", ""),
    ("models", "Models", "/models"),
    ("datasets", "Datasets", "/datasets"),
    ("prompts", "Prompts", "/prompts"),
    ("runs", "Runs", "/runs"),
    ("deployments", "Deployments", "/deployments"),
    ("traces", "Traces", "/traces"),
    ("monitoring", "Monitoring", "/monitoring"),
    ("alerts", "Alerts", "/alerts"),
    ("annotation", "Annotation", "/annotation"),
    ("governance", "Governance", "/governance"),
    ("keys", "Keys", "/keys"),
)
ADMIN_ONLY = frozenset({"keys"})


def render(
    request: Request, template: str, status: int = 200, *, section: str = "", **context: Any
) -> HTMLResponse:
    """Render ``template`` with the page's context; ``section`` highlights the nav entry.

    Templates get ``prefix``, the dashboard's address (``/ui`` below the root path), and
    ``root_path``, the server's ("" or ``/llmloop``, for ``/v1``, ``/api`` and ``/health``).
    """
    actor = getattr(request.state, "ui_actor", None)
    base = ui_base(request)
    flash = request.cookies.get(FLASH_COOKIE)
    context.setdefault("flash", unquote(flash[2:]) if flash else None)
    context.setdefault("flash_kind", "error" if flash and flash.startswith("e:") else "ok")
    nav = [n for n in NAV if n[0] not in ADMIN_ONLY or (actor and actor.role == "admin")]
    page = templates().get_template(template)
    html = page.render(request=request, section=section, nav=nav, actor=actor, prefix=base,
                       root_path=root_path(request), **context)  # fmt: skip
    response = HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)
    if flash:
        response.delete_cookie(FLASH_COOKIE, path=base)
    return response


def redirect(
    request: Request, url: str, message: str = "", *, error: bool = False
) -> RedirectResponse:
    """Post/redirect/get: a 303 to ``url`` that shows ``message`` once on the page it leads to.

    ``url`` is a whole path, root path included (built from :func:`ui_base`).
    """
    response = RedirectResponse(url, status_code=303)
    if message:
        value = ("e:" if error else "o:") + quote(message[:300])
        response.set_cookie(FLASH_COOKIE, value, max_age=60, httponly=True, samesite="strict",
                            path=ui_base(request))  # fmt: skip
    return response


def error_page(request: Request, status: int, title: str, detail: str) -> HTMLResponse:
    return render(request, "error.html", status=status, title=title, detail=detail)


def svg(markup: str) -> Markup:
    """Mark SVG built by :mod:`llmloop.ui.charts` (which escapes its text) as safe HTML."""
    return Markup(markup)


# --- sign in --------------------------------------------------------------------------------

session = page_router()


def _safe_next(target: str | None, base: str) -> str:
    """Only a path on this dashboard (``base``): never an absolute URL (no open redirect)."""
    if (
        target
        and (target == base or target.startswith((f"{base}/", f"{base}?")))
        and not any(ch == "\\" or ord(ch) < 32 for ch in target)
    ):
        return target
    return f"{base}/"


def _cookie_path(request: Request) -> str:
    # The whole server (the key is sent nowhere else on a host that serves other apps too).
    return root_path(request) or "/"


@session.get("/login")
def login_form(request: Request, base: Base, next: str | None = None) -> HTMLResponse:
    return render(request, "login.html", next=_safe_next(next, base), error=None)


@session.post("/login", dependencies=[FormGuard])
def login(
    request: Request,
    c: ContainerPage,
    base: Base,
    key: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "",
) -> Response:
    target = _safe_next(next, base)
    try:
        actor = c.keys.authenticate(key.strip())
    except AuthenticationError as exc:
        return render(request, "login.html", status=401, next=target, error=exc.detail)
    log.info("dashboard sign-in by '%s'", actor.name)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        key.strip(),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path=_cookie_path(request),
    )
    return response


@session.post("/logout", dependencies=[FormGuard])
def logout(request: Request, base: Base) -> Response:
    response = RedirectResponse(f"{base}/login", status_code=303)
    response.delete_cookie(COOKIE, path=_cookie_path(request))
    return response


def install(app: FastAPI, routers: list[APIRouter]) -> None:
    """Mount the dashboard on ``app``: pages under ``/ui``, assets, and ``/`` leading to it."""
    app.include_router(session, prefix=PREFIX)
    for router in routers:
        app.include_router(router, prefix=PREFIX)
    app.mount(f"{PREFIX}/static", StaticFiles(packages=[("llmloop.ui", "static")]), name="ui")

    # A path, not a whole URL: Starlette's own slash redirect names the Host the server got,
    # which is the upstream's behind a proxy that rewrites Host.
    @app.get("/", include_in_schema=False)
    @app.get(PREFIX, include_in_schema=False)
    def root(base: Base) -> Response:
        return RedirectResponse(f"{base}/", status_code=307)
