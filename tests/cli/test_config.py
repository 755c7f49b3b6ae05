"""``llmloop config show``: effective values and their sources (flag, env, file, default)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from typer.testing import Result

Invoke = Callable[..., Result]  # the `cli` fixture (tests/cli/conftest.py)


def _by_name(stdout: str) -> dict[str, dict[str, str]]:
    return {row["name"]: row for row in json.loads(stdout)}


def test_sources_from_flag_env_file_and_default(cli: Invoke, home: Path, tmp_path: Path) -> None:
    toml = tmp_path / "llmloop.toml"
    toml.write_text('[llmloop]\nport = 9001\nlog_level = "DEBUG"\n', encoding="utf-8")
    env = {"LLMLOOP_CONFIG": str(toml), "LLMLOOP_LOG_LEVEL": "WARNING"}
    rows = _by_name(cli("config", "show", "--json", ok=True, env=env).stdout)
    assert rows["home"]["source"] == "flag"
    assert rows["home"]["value"] == str(home)
    assert rows["port"] == {**rows["port"], "value": "9001", "source": f"file {toml}"}
    assert rows["log_level"]["value"] == "WARNING"
    assert rows["log_level"]["source"] == "env LLMLOOP_LOG_LEVEL"
    assert rows["host"]["source"] == "default"
    assert rows["database_url"]["source"].startswith("default")


def test_database_url_flag_is_redacted(cli: Invoke) -> None:
    url = "postgresql+psycopg://me:secret@db.example/llmloop"
    result = cli("--database-url", url, "config", "show", "--json", ok=True)
    row = _by_name(result.stdout)["database_url"]
    assert row["source"] == "flag" and "secret" not in row["value"]


def test_table_output_names_every_setting(cli: Invoke) -> None:
    result = cli("config", "show", "--verbose", ok=True)
    for name in ("home", "database_url", "allow_self_approval", "log_level"):
        assert name in result.stdout


def test_a_bad_value_names_the_setting_and_where_it_came_from(cli: Invoke, tmp_path: Path) -> None:
    toml = tmp_path / "llmloop.toml"
    toml.write_text('trace_writer = "threads"\n', encoding="utf-8")
    env = {"LLMLOOP_CONFIG": str(toml), "LLMLOOP_PORT": "eighty"}
    result = cli("config", "show", env=env)
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "port (env LLMLOOP_PORT): Input should be a valid integer" in text
    assert f"trace_writer (file {toml}): String should match" in text
    assert "errors.pydantic.dev" not in text and "Traceback" not in text
