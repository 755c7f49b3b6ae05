"""``llmloop serve`` and ``llmloop demo``: settings reach the app; absent modules are clear."""

from __future__ import annotations

import os
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import Result

from llmloop.cli import serve
from llmloop.config import Settings

Invoke = Callable[..., Result]  # the `cli` fixture (tests/cli/conftest.py)


@pytest.fixture
def fake_uvicorn(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, dict[str, Any]]]:
    calls: list[tuple[Any, dict[str, Any]]] = []
    module = types.ModuleType("uvicorn")
    module.run = lambda app, **kw: calls.append((app, kw))  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "uvicorn", module)
    return calls


def test_one_worker_gets_an_app_built_from_the_cli_settings(
    cli: Invoke, home: Path, fake_uvicorn: list[tuple[Any, dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    built: list[Settings] = []

    def create_app(settings: Settings | None = None) -> str:
        assert settings is not None
        built.append(settings)
        return "the-app"

    monkeypatch.setattr(serve, "_load_factory", lambda: create_app)
    result = cli("serve", "--port", "9123", ok=True)
    assert "http://127.0.0.1:9123" in result.stdout
    assert built[0].home == home
    app, options = fake_uvicorn[0]
    assert app == "the-app" and options["port"] == 9123 and options["host"] == "127.0.0.1"


def test_several_workers_use_the_factory_with_flags_in_env(
    cli: Invoke, home: Path, fake_uvicorn: list[tuple[Any, dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setattr(serve, "_load_factory", lambda: None)
    monkeypatch.setattr(os, "environ", dict(os.environ))  # restored after the test
    result = cli("serve", "--workers", "2", "--host", "0.0.0.0", ok=True)
    app, options = fake_uvicorn[0]
    assert app == serve.APP_FACTORY and options["factory"] is True and options["workers"] == 2
    assert options["port"] == 8400 and options["host"] == "0.0.0.0"
    assert os.environ["LLMLOOP_HOME"] == str(home)
    assert "2 workers without LLMLOOP_REDIS_URL" in result.stderr  # limits, responses: per worker
    redis = {"LLMLOOP_REDIS_URL": "redis://127.0.0.1:6379/0"}
    shared = cli("serve", "--workers", "2", ok=True, env=redis)
    assert "LLMLOOP_REDIS_URL" not in shared.stderr


def test_flags_as_env() -> None:
    env = serve.flags_as_env({"home": Path("/h"), "database_url": "sqlite:///x.db"})
    assert env == {"LLMLOOP_HOME": "/h", "LLMLOOP_DATABASE_URL": "sqlite:///x.db"}


def test_missing_server_module_is_a_clear_error(
    cli: Invoke, fake_uvicorn: list[tuple[Any, dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "llmloop.api.app", None)
    result = cli("serve")
    assert result.exit_code == 1 and "llmloop.api.app" in result.stderr
    assert fake_uvicorn == []


def test_demo_runs_main_with_settings(
    cli: Invoke, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[Settings, bool]] = []
    module = types.ModuleType("llmloop.demo")
    module.main = lambda settings, registry_only: seen.append((settings, registry_only))  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "llmloop.demo", module)
    cli("demo", ok=True)
    cli("demo", "--registry", ok=True)
    assert seen[0][0].home == home and [flag for _, flag in seen] == [False, True]


def test_demo_absent_is_a_clear_error(cli: Invoke, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "llmloop.demo", None)
    result = cli("demo")
    assert result.exit_code == 1 and "llmloop.demo" in result.stderr


def test_demo_exit_code_is_passed_on(cli: Invoke, monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("llmloop.demo")
    module.main = lambda settings, registry_only: 3  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "llmloop.demo", module)
    assert cli("demo").exit_code == 3
