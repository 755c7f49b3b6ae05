"""``llmloop demo``: run the guided demo of the whole loop against the configured home.

The demo itself lives in ``llmloop.demo`` (``main(settings)``), imported only when this command
runs; this module is the thin command around it.
"""

from __future__ import annotations

import importlib

import typer

from llmloop.cli.context import get_state
from llmloop.errors import LlmloopError


def demo_command(
    ctx: typer.Context,
    registry: bool = typer.Option(False, "--registry", help="Only the quick registry tour."),
) -> None:
    """The registry tour, then the whole loop: data, training, evaluation, serving, feedback,
    retraining, canary and promotion (about 2 minutes on 2 CPU cores)."""
    try:
        module = importlib.import_module("llmloop.demo")
    except ModuleNotFoundError as exc:
        if exc.name not in ("llmloop.demo",):
            raise
        raise LlmloopError("the demo is not part of this build of llmloop (no llmloop.demo)")
    runner = getattr(module, "main", None)
    if not callable(runner):
        raise LlmloopError("llmloop.demo has no main(settings) function")
    code = runner(get_state(ctx).settings, registry_only=registry)
    if isinstance(code, int) and code:
        raise typer.Exit(code)
