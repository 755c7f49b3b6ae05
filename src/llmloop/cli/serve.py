"""``llmloop serve``: run the REST API (and gateway and UI) with uvicorn.

One worker gets an app built in this process from the CLI's Settings (a closure over them).
Several workers are separate processes that each call the factory
``llmloop.api.app:create_app``; they get the same Settings because the CLI's flags are passed
to them as ``LLMLOOP_*`` environment variables (below the flags, env and the TOML file are read
the same way). ``--ray`` runs the app on Ray Serve instead (``api/ray_serve.py``): ``--replicas``
copies behind Ray's HTTP proxy on the same host and port, on a local Ray or the cluster at
``--ray-address``. ``--root-path /llmloop`` tells uvicorn (the ASGI ``root_path``) that a reverse
proxy serves the server under that prefix and strips it, so the dashboard's links, redirects and
cookies carry it. uvicorn, Ray and the API are imported only when this command runs.

Operations: a port another process listens on is refused at once, before any engine loads.
SIGTERM or Ctrl-C stops accepting connections and gives in-flight requests ``--drain-timeout``
seconds to finish (then they are cancelled, and still traced); a second signal stops waiting.
Several workers share prometheus_client's multiprocess folder (a fresh temporary one unless
``PROMETHEUS_MULTIPROC_DIR`` is set), so any worker's ``/metrics`` counts them all.
"""

from __future__ import annotations

import importlib
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import typer

from llmloop.cli.context import get_state
from llmloop.cli.output import say, warn
from llmloop.config import ENV_PREFIX, redact_url
from llmloop.errors import ConfigError, LlmloopError

if TYPE_CHECKING:
    from llmloop.config import Settings

APP_FACTORY = "llmloop.api.app:create_app"
RAY_SERVE_MODULE = "llmloop.api.ray_serve"
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's own variable


def flags_as_env(overrides: Mapping[str, Any]) -> dict[str, str]:
    """The CLI's setting flags as ``LLMLOOP_*`` variables for worker processes."""
    return {f"{ENV_PREFIX}{key.upper()}": str(value) for key, value in overrides.items()}


def _load_factory() -> Any:
    module_name, _, attr = APP_FACTORY.partition(":")
    return getattr(_import_server_module(module_name), attr)


def _import_server_module(module_name: str) -> Any:
    # By name, like the app factory: the import contract keeps the CLI from importing the API.
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise LlmloopError(f"the server is not part of this build of llmloop (no {module_name})")


def serve_command(
    ctx: typer.Context,
    host: str | None = typer.Option(None, "--host", help="Address to bind (setting: host)."),
    port: int | None = typer.Option(
        None, "--port", min=0, max=65535, help="Port to bind (setting: port)."
    ),
    workers: int = typer.Option(1, "--workers", "-w", min=1, help="Worker processes."),
    ray: bool = typer.Option(
        False, "--ray", help="Serve on Ray Serve (needs llmloop[ray]): replicas on a Ray cluster."
    ),
    replicas: int | None = typer.Option(
        None, "--replicas", min=1, help="With --ray: copies of the app (default 2)."
    ),
    ray_address: str | None = typer.Option(
        None,
        "--ray-address",
        help="With --ray: join this Ray cluster (default: start a local Ray).",
    ),
    replica_gpus: float = typer.Option(
        0.0, "--replica-gpus", min=0.0, help="With --ray: GPUs reserved per replica (e.g. 1)."
    ),
    root_path: str = typer.Option(
        "",
        "--root-path",
        help="The path prefix a reverse proxy serves llmloop under and strips (e.g. /llmloop).",
    ),
    drain_timeout: float = typer.Option(
        30.0,
        "--drain-timeout",
        min=0.0,
        help="On SIGTERM or Ctrl-C: seconds in-flight requests get to finish before they are "
        "cancelled (a client that stalls cannot hold the shutdown).",
    ),
) -> None:
    """Run the llmloop server (REST API, gateway, UI) until interrupted."""
    state = get_state(ctx)
    settings = state.settings
    bind_host = host or settings.host
    bind_port = settings.port if port is None else port
    root_path = check_root_path(root_path)
    if ray:
        if workers != 1:
            raise ConfigError("--workers does not apply with --ray; use --replicas")
        if root_path:
            raise ConfigError("--root-path does not apply with --ray")
        options = {"num_gpus": replica_gpus} if replica_gpus else {}
        if ray_address is None and not os.environ.get("RAY_ADDRESS"):
            check_port_free(bind_host, bind_port)  # Ray's proxy binds it on this machine
        serve_on_ray(settings, bind_host, bind_port, replicas or 2, ray_address, options)
        return
    if replicas is not None or ray_address is not None or replica_gpus:
        raise ConfigError("--replicas, --ray-address and --replica-gpus need --ray")
    check_port_free(bind_host, bind_port)  # before engines load, not after
    if settings.deployments_file:  # a mistake in it stops here with its message, no traceback
        from llmloop.cli.deployments import check_deployments_file

        check_deployments_file(state, settings.deployments_file, env_required=True)
    import uvicorn

    log_level = settings.log_level.lower()
    create_app = _load_factory()
    dashboard = (
        f"dashboard at {root_path}/ui/ through the reverse proxy"
        if root_path
        else f"dashboard at http://{_browser_host(bind_host)}:{bind_port}/ui"
    )
    say(
        f"llmloop serving on http://{bind_host}:{bind_port} "
        f"(database {redact_url(settings.database_url)}, {workers} worker(s)); {dashboard}"
    )
    # Only when given: without it, uvicorn is called exactly as before.
    extra: dict[str, Any] = {"root_path": root_path} if root_path else {}
    extra["timeout_graceful_shutdown"] = drain_timeout
    if workers == 1:
        # Built here so an outdated schema or a bad setting stops before binding the port.
        app = create_app(settings)
        # uvicorn drains in-flight requests on SIGTERM, then re-raises the signal; a drained
        # shutdown is a clean one, so the process exits 0.
        signal.signal(signal.SIGTERM, lambda *_: None)
        uvicorn.run(app, host=bind_host, port=bind_port, log_level=log_level, **extra)
        return
    if not settings.redis_url:
        warn(
            f"{workers} workers without LLMLOOP_REDIS_URL: each keeps its own count of the "
            "per-key limits, and a Responses API conversation (previous_response_id) goes on "
            "only on the worker that answered it; set LLMLOOP_REDIS_URL to share both"
        )
    os.environ.update(flags_as_env(state.overrides))
    with shared_metrics_dir():
        uvicorn.run(
            APP_FACTORY,
            factory=True,
            host=bind_host,
            port=bind_port,
            workers=workers,
            log_level=log_level,
            **extra,
        )


def check_port_free(host: str, port: int) -> None:
    """ConfigError at once when ``host:port`` cannot be bound (another server listens there),
    instead of uvicorn's error after every engine has loaded."""
    if port == 0:
        return
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            sock.bind(address)
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc} (is another server "
                "running there? stop it or choose another --port)"
            ) from None


@contextmanager
def shared_metrics_dir() -> Iterator[None]:
    """prometheus_client's multiprocess folder for the workers (they inherit the variable):
    a fresh one, removed afterwards, unless the operator named one."""
    if os.environ.get(METRICS_DIR_ENV):
        yield
        return
    path = tempfile.mkdtemp(prefix="llmloop-metrics-")
    os.environ[METRICS_DIR_ENV] = path
    try:
        yield
    finally:
        os.environ.pop(METRICS_DIR_ENV, None)
        shutil.rmtree(path, ignore_errors=True)


def check_root_path(value: str) -> str:
    """``--root-path`` as uvicorn wants it: ``/a/b`` (no trailing slash), or "" for none."""
    value = value.strip().rstrip("/")
    # uvicorn sends it as raw ASCII bytes; a space, '?' or '#' would not survive in a URL.
    if value and (
        not value.startswith("/")
        or "//" in value
        or not value.isascii()
        or any(ch.isspace() or ch in "?#\\" or ord(ch) < 32 for ch in value)
    ):
        raise ConfigError(f"--root-path must be a path such as /llmloop, not {value!r}")
    return value


def _browser_host(host: str) -> str:
    """The address a browser on this machine opens for ``host`` (a wildcard is not one)."""
    if host in ("0.0.0.0", "", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def serve_on_ray(
    settings: Settings,
    host: str,
    port: int,
    replicas: int,
    address: str | None,
    ray_actor_options: dict[str, Any],
) -> None:
    """Deploy the app on Ray Serve and block; Ctrl-C or SIGTERM stops the replicas gracefully."""
    ray_serve = _import_server_module(RAY_SERVE_MODULE)
    serve = ray_serve.import_serve()  # "install llmloop[ray]" before anything starts
    import ray

    from llmloop.services.container import Container

    # Open the store once here: an outdated schema stops now, and an empty database gets its
    # schema before several replicas race to create it.
    container = Container(settings)
    try:
        container.store  # noqa: B018
    finally:
        container.close()
    app = ray_serve.build_ray_app(settings, replicas, ray_actor_options)
    ray.init(address=address)  # None: a new local Ray (or the cluster in RAY_ADDRESS)
    # After ray.init, which installs its own SIGTERM handler (one that aborts the process):
    # SIGTERM stops as Ctrl-C does, so the replicas are deleted gracefully below.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        serve.start(http_options={"host": host, "port": port})
        serve.run(app, name=ray_serve.DEPLOYMENT_NAME, route_prefix="/")
        say(
            f"llmloop serving on http://{host}:{port} with Ray Serve "
            f"({replicas} replica(s), database {redact_url(settings.database_url)})"
        )
        while True:
            time.sleep(1)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM, while starting or serving
        say("stopping the Ray Serve replicas (in-flight requests drain, traces are flushed)")
    finally:
        # Only this application goes: each replica's lifespan runs (traces are flushed); a
        # local Ray started above stops with ray.shutdown, a shared cluster keeps running.
        serve.delete(ray_serve.DEPLOYMENT_NAME)
        ray.shutdown()


def _interrupt(*_: Any) -> None:
    raise KeyboardInterrupt
