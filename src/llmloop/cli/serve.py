"""``llmloop serve``: run the REST API (and gateway and UI) with uvicorn.

One worker gets an app built in this process from the CLI's Settings (a closure over them).
Several workers are separate processes that each call the factory
``llmloop.api.app:create_app``; they get the same Settings because the CLI's flags are passed
to them as ``LLMLOOP_*`` environment variables (below the flags, env and the TOML file are read
the same way). uvicorn and the API are imported only when this command runs.
"""

from __future__ import annotations

import importlib
import os
import signal
from collections.abc import Mapping
from typing import Any

import typer

from llmloop.cli.context import get_state
from llmloop.cli.output import say
from llmloop.config import ENV_PREFIX, redact_url
from llmloop.errors import LlmloopError

APP_FACTORY = "llmloop.api.app:create_app"


def flags_as_env(overrides: Mapping[str, Any]) -> dict[str, str]:
    """The CLI's setting flags as ``LLMLOOP_*`` variables for worker processes."""
    return {f"{ENV_PREFIX}{key.upper()}": str(value) for key, value in overrides.items()}


def _load_factory() -> Any:
    module_name, _, attr = APP_FACTORY.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise LlmloopError(f"the server is not part of this build of llmloop (no {module_name})")
    return getattr(module, attr)


def serve_command(
    ctx: typer.Context,
    host: str | None = typer.Option(None, "--host", help="Address to bind (setting: host)."),
    port: int | None = typer.Option(
        None, "--port", min=0, max=65535, help="Port to bind (setting: port)."
    ),
    workers: int = typer.Option(1, "--workers", "-w", min=1, help="Worker processes."),
) -> None:
    """Run the llmloop server (REST API, gateway, UI) until interrupted."""
    import uvicorn

    state = get_state(ctx)
    settings = state.settings
    bind_host = host or settings.host
    bind_port = settings.port if port is None else port
    log_level = settings.log_level.lower()
    create_app = _load_factory()
    say(
        f"llmloop serving on http://{bind_host}:{bind_port} "
        f"(database {redact_url(settings.database_url)}, {workers} worker(s))"
    )
    if workers == 1:
        # Built here so an outdated schema or a bad setting stops before binding the port.
        app = create_app(settings)
        # uvicorn drains in-flight requests on SIGTERM, then re-raises the signal; a drained
        # shutdown is a clean one, so the process exits 0.
        signal.signal(signal.SIGTERM, lambda *_: None)
        uvicorn.run(app, host=bind_host, port=bind_port, log_level=log_level)
        return
    os.environ.update(flags_as_env(state.overrides))
    uvicorn.run(
        APP_FACTORY,
        factory=True,
        host=bind_host,
        port=bind_port,
        workers=workers,
        log_level=log_level,
    )
