"""The root command: help without heavy imports, the version, and the one error handler."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ValidationError
from typer.testing import Result

from llmloop.cli.main import describe_validation_error, report_error
from llmloop.errors import ConflictError, NotFoundError

HEAVY = ("torch", "transformers", "vllm")

Invoke = Callable[..., Result]  # the `cli` fixture (tests/cli/conftest.py)


def test_help_and_import_do_not_load_heavy_modules() -> None:
    code = (
        "import sys\n"
        "from llmloop.cli.main import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code in (0, None), exc.code\n"
        f"loaded = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "datasets" in done.stdout and "approvals" in done.stdout


def test_console_script_help() -> None:
    script = Path(sys.executable).with_name("llmloop")
    done = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "--home" in done.stdout and "Traceback" not in done.stderr


def test_version(cli: Invoke) -> None:
    result = cli("--version", ok=True)
    assert result.stdout.startswith("llmloop ")


def test_unknown_name_exits_3_with_message(cli: Invoke) -> None:
    result = cli("datasets", "show", "nope")
    assert result.exit_code == 3
    assert "error: no dataset named 'nope'" in result.stderr
    assert "Traceback" not in result.output


def test_invalid_name_is_a_readable_validation_error(cli: Invoke) -> None:
    result = cli("datasets", "create", "bad name!")
    assert result.exit_code == 2
    assert "invalid input" in result.stderr and "name:" in result.stderr


def test_report_error_maps_exit_codes(capsys: object) -> None:
    assert report_error(NotFoundError("gone")) == 3
    assert report_error(ConflictError("clash")) == 4
    assert report_error(FileNotFoundError(2, "No such file", "x.jsonl")) == 2
    assert report_error(RuntimeError("boom")) == 1


def test_describe_validation_error_lists_fields() -> None:
    class Spec(BaseModel):
        count: int
        name: str

    try:
        Spec.model_validate({"count": "many"})
    except ValidationError as exc:
        text = describe_validation_error(exc)
    assert "count:" in text and "name:" in text


def test_missing_setting_file_is_a_clear_error(cli: Invoke, tmp_path: Path) -> None:
    result = cli("config", "show", env={"LLMLOOP_CONFIG": str(tmp_path / "absent.toml")})
    assert result.exit_code == 2
    assert "LLMLOOP_CONFIG" in result.stderr


def test_usage_errors_keep_typer_handling(cli: Invoke) -> None:
    missing = cli("datasets", "add-version", "qa")
    assert missing.exit_code == 2 and "--file" in missing.output
    assert cli("runs", "list", "--limit", "0").exit_code == 2
    assert cli("no-such-command").exit_code == 2
    assert "Usage" in cli("datasets", ok=False).output
