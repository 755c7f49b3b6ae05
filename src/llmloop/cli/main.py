"""The ``llmloop`` command: the root app, its global options and the one error handler.

Global options (``--home``, ``--database-url``, ``--artifacts-url``) become Settings overrides
(flags > env > llmloop.toml > defaults); ``--as NAME`` acts as another local user. Every error
a user can cause is printed as ``error: <detail>`` on stderr with the error's exit code, never
a traceback. Each noun's commands live in their own module; this one only wires them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer
from pydantic import ValidationError
from typer.core import TyperGroup

from llmloop import __version__
from llmloop.cli import (
    alerts,
    annotate,
    approvals,
    audit,
    config,
    curate,
    data,
    datasets,
    db,
    demo,
    deployments,
    drift,
    evals,
    feedback,
    keys,
    lineage,
    models,
    monitor,
    pipelines,
    prompts,
    rollout,
    runs,
    serve,
    train,
)
from llmloop.cli.context import build_state
from llmloop.errors import LlmloopError

USAGE_EXIT = 2
UNEXPECTED_EXIT = 1
INTERRUPTED_EXIT = 130  # 128 + SIGINT, as shells report Ctrl-C


def describe_validation_error(exc: ValidationError) -> str:
    """A readable list of the fields pydantic refused."""
    lines = []
    for err in exc.errors():
        where = ".".join(str(part) for part in err.get("loc", ())) or "value"
        lines.append(f"  {where}: {err.get('msg', 'invalid')}")
    return "invalid input:\n" + "\n".join(lines)


def report_error(exc: BaseException) -> int:
    """Print ``error: ...`` on stderr for ``exc`` and return the exit code it maps to."""
    code = UNEXPECTED_EXIT
    if isinstance(exc, LlmloopError):
        message, code = exc.detail, exc.exit_code
    elif isinstance(exc, ValidationError):
        message, code = describe_validation_error(exc), USAGE_EXIT
    elif isinstance(exc, FileNotFoundError):
        message, code = f"no such file: {exc.filename or exc}", USAGE_EXIT
    elif isinstance(exc, OSError) and exc.filename:  # read or written: `--out DIR`, `--home FILE`
        message, code = f"cannot use {exc.filename}: {exc.strerror or exc}", USAGE_EXIT
    elif isinstance(exc, UnicodeDecodeError):
        message, code = f"the file is not UTF-8 text: {exc.reason}", USAGE_EXIT
    else:
        message = f"unexpected {type(exc).__name__}: {exc} (please report this)"
    sys.stderr.write(f"error: {message}\n")
    return code


class LlmloopGroup(TyperGroup):
    """The root group: turns every error a command raises into a message and an exit code."""

    # ``ctx`` is typer's vendored click Context, which typer does not export by name.
    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise  # exits, aborts and usage errors keep typer's own handling
        except BrokenPipeError:
            raise  # `llmloop ... | head`: click's main exits quietly, as for rich's output
        except KeyboardInterrupt:
            sys.stderr.write("interrupted\n")
            raise typer.Exit(INTERRUPTED_EXIT) from None
        except Exception as exc:
            raise typer.Exit(report_error(exc)) from None


app = typer.Typer(
    name="llmloop",
    cls=LlmloopGroup,
    help="llmloop: data, prompts, runs, models, governance and serving, local-first.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"llmloop {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    home: Path | None = typer.Option(
        None, "--home", help="Folder for the database, artifacts and caches (LLMLOOP_HOME)."
    ),
    database_url: str | None = typer.Option(
        None, "--database-url", help="SQLAlchemy URL of the store (LLMLOOP_DATABASE_URL)."
    ),
    artifacts_url: str | None = typer.Option(
        None, "--artifacts-url", help="fsspec URL of the artifact store (LLMLOOP_ARTIFACTS_URL)."
    ),
    as_user: str | None = typer.Option(
        None, "--as", help="Act as this local user (e.g. a second person approving)."
    ),
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """Global options; they apply to every command."""
    state = build_state(home, database_url, artifacts_url, as_user)
    ctx.obj = state
    ctx.call_on_close(state.close)


app.add_typer(config.app, name="config")
app.add_typer(db.app, name="db")
app.add_typer(datasets.app, name="datasets")
app.add_typer(data.app, name="data")
app.add_typer(prompts.app, name="prompts")
app.add_typer(runs.app, name="runs")
app.add_typer(models.app, name="models")
app.add_typer(approvals.app, name="approvals")
app.add_typer(keys.app, name="keys")
app.add_typer(evals.app, name="eval")
app.add_typer(train.app, name="train")
app.add_typer(pipelines.app, name="pipeline")
app.add_typer(rollout.app, name="rollout")
app.add_typer(deployments.app, name="deployments")
app.command("audit")(audit.audit_command)
app.command("lineage")(lineage.lineage_command)
app.command("serve")(serve.serve_command)
app.command("demo")(demo.demo_command)
app.add_typer(feedback.app, name="feedback")
app.add_typer(annotate.app, name="annotate")
app.add_typer(drift.app, name="drift")
app.add_typer(alerts.app, name="alerts")
app.command("monitor")(monitor.monitor_command)
app.command("curate")(curate.curate_command)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the app; nothing escapes as a traceback."""
    try:
        app(args=argv, prog_name="llmloop")
    except SystemExit:
        raise
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        raise SystemExit(INTERRUPTED_EXIT) from None
    except Exception as exc:  # errors raised outside a command (e.g. while parsing)
        raise SystemExit(report_error(exc)) from None


if __name__ == "__main__":
    main()
