"""Settings precedence (flag > env > file > default) and the source report."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmloop.config import describe_settings, load_settings, redact_url
from llmloop.errors import ConfigError


def test_defaults_live_under_home(tmp_path: Path) -> None:
    s = load_settings({"home": str(tmp_path)}, env={})
    assert s.database_url == f"sqlite:///{tmp_path / 'llmloop.db'}"
    assert s.artifacts_url == str(tmp_path / "artifacts")


def test_precedence_and_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "llmloop.toml"
    toml.write_text('[llmloop]\nport = 9000\nhost = "0.0.0.0"\nlog_level = "DEBUG"\n')
    env = {"LLMLOOP_CONFIG": str(toml), "LLMLOOP_PORT": "9100", "LLMLOOP_HOME": str(tmp_path)}
    s = load_settings({"host": "127.0.0.2"}, env=env)
    assert (s.port, s.host, s.log_level) == (9100, "127.0.0.2", "DEBUG")
    rows = {r["name"]: r for r in describe_settings({"host": "127.0.0.2"}, env=env)}
    assert rows["port"]["source"] == "env LLMLOOP_PORT"
    assert rows["host"]["source"] == "flag"
    assert rows["log_level"]["source"].startswith("file ")
    assert rows["database_url"]["source"] == "default (under home)"


def test_bad_settings_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="port"):
        load_settings({"port": 70000}, env={})
    bad = tmp_path / "bad.toml"
    bad.write_text("port = [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(env={"LLMLOOP_CONFIG": str(bad)})
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("colour = 'blue'\n")
    with pytest.raises(ConfigError, match="unknown setting 'colour'"):
        load_settings(env={"LLMLOOP_CONFIG": str(unknown)})
    with pytest.raises(ConfigError, match="not a file"):
        load_settings(env={"LLMLOOP_CONFIG": str(tmp_path / "missing.toml")})


def test_passwords_are_redacted() -> None:
    assert redact_url("postgresql://u:secret@h/db") == "postgresql://u:***@h/db"
    assert redact_url("sqlite:///x.db") == "sqlite:///x.db"
