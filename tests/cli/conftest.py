"""Fixtures for the CLI tests: a runner bound to a fresh ``--home`` and a clean environment."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from llmloop.cli.main import app

Invoke = Callable[..., Result]


def clean_env(**extra: str) -> dict[str, str | None]:
    """Unset every LLMLOOP_* variable of the outer environment, then set ``extra``."""
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("LLMLOOP_")}
    env.update(extra)
    return env


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def cli(home: Path) -> Invoke:
    """Run ``llmloop --home <tmp> ARGS``; ``ok=True`` asserts exit 0 and shows output if not."""
    runner = CliRunner()

    def invoke(*args: str, ok: bool = False, env: dict[str, str] | None = None) -> Result:
        result = runner.invoke(app, ["--home", str(home), *args], env=clean_env(**(env or {})))
        if ok:
            assert result.exit_code == 0, f"exit {result.exit_code}: {result.output}"
        return result

    return invoke


@pytest.fixture
def cli_json(cli: Invoke) -> Callable[..., Any]:
    """Run a command with ``--json``, assert success and return the parsed stdout."""

    def invoke(*args: str) -> Any:
        return json.loads(cli(*args, "--json", ok=True).stdout)

    return invoke


@pytest.fixture
def rows_file(tmp_path: Path) -> Path:
    path = tmp_path / "rows.jsonl"
    path.write_text(
        '{"prompt": "2+2?", "response": "4"}\n\n'
        '{"prompt": "capital of France?", "response": "Paris"}\n',
        encoding="utf-8",
    )
    return path
