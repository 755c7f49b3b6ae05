"""``llmloop deployments apply`` and ``llmloop serve`` with a deployments file: every mistake is a
message naming the deployment and the field, a non-zero exit and nothing stored."""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import Result

Invoke = Callable[..., Result]  # the `cli` fixture (tests/cli/conftest.py)

GOOD = "{model: bot, alias: champion}"
UPSTREAM = ("{engine: {kind: openai, model: m, options: "
            "{base_url: 'http://127.0.0.1:9/v1', api_key_env: UPSTREAM_KEY}}}")  # fmt: skip
MISTAKES = {
    "unknown key": (f"name: d\ntargets: [{GOOD}]\nstikcy: true\n", "stikcy"),
    "unknown target key": ("name: d\ntargets: [{model: bot, alais: champion}]\n", "alais"),
    "negative weight": ("name: d\ntargets: [{model: bot, weight: -1}]\n", "targets.0.weight"),
    "zero weights": (
        "name: d\ntargets: [{model: bot, weight: 0}, {model: bot, weight: 0}]\n",
        "targets: the weights must add up to more than 0",
    ),
    "fractions not adding up": (
        "name: d\ntargets: [{model: bot, weight: 0.9}, {model: bot, weight: 0.2}]\n",
        "targets: the weights are fractions that add up to 1.1, not 1",
    ),
    "missing alias": (
        "name: d\ntargets: [{model: bot, alias: nosuch}]\n",
        "targets.0 (bot@nosuch): model 'bot' has no alias 'nosuch'",
    ),
    "missing model": ("name: d\ntargets: [{model: ghost}]\n", "targets.0 (ghost@latest)"),
    "unknown engine": (
        f"name: d\ntargets: [{GOOD}]\nshadow: {{engine: {{kind: nosuch, model: x}}}}\n",
        "shadow (nosuch:x): no engine named 'nosuch'",
    ),
    "bad engine option": (
        "name: d\ntargets: [{engine: {kind: openai, model: x, options: {base_ur: 'http://h'}}}]\n",
        "targets.0 (openai:x): bad openai engine options",
    ),
    "unknown guard": (f"name: d\ntargets: [{GOOD}]\nguards: [{{kind: nosuch}}]\n", "guards:"),
    "bad cache": (f"name: d\ntargets: [{GOOD}]\ncache: {{ttl: 5}}\n", "cache: bad deployment"),
    "empty file": ("# nothing yet\n", "no deployments in the file"),
    "duplicate names": (
        f"- {{name: d, targets: [{GOOD}]}}\n- {{name: d, targets: [{GOOD}]}}\n",
        "deployment names repeat: d",
    ),
}


def flat(output: str) -> str:
    """The CLI's output with its line wrapping undone (where it wraps depends on the paths)."""
    return " ".join(output.split())


@pytest.fixture
def bot(cli: Invoke) -> None:
    cli("models", "add-version", "bot", "--format", "echo", "-p", "prefix=B:", ok=True)
    cli("models", "alias", "bot", "champion", "1", ok=True)


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_a_mistake_is_named_and_nothing_is_stored(
    cli: Invoke, bot: None, tmp_path: Path, mistake: str
) -> None:
    text, named = MISTAKES[mistake]
    path = tmp_path / "deployments.yaml"
    path.write_text(text)
    result = cli("deployments", "apply", str(path))
    assert result.exit_code == 2, result.output
    assert named in flat(result.output) and "Traceback" not in result.output
    assert cli("deployments", "list", "--json", ok=True).stdout.strip() == "[]"


def test_one_wrong_deployment_keeps_the_whole_file_out(
    cli: Invoke, bot: None, tmp_path: Path
) -> None:
    path = tmp_path / "deployments.yaml"
    path.write_text(f"- {{name: fine, targets: [{GOOD}]}}\n"
                    "- {name: broken, targets: [{model: bot, alias: nosuch}]}\n")  # fmt: skip
    result = cli("deployments", "apply", str(path))
    assert result.exit_code == 2 and "deployment #2 (broken)" in flat(result.output)
    assert cli("deployments", "list", "--json", ok=True).stdout.strip() == "[]"


def test_an_unset_key_variable_is_a_warning_for_apply(
    cli: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("UPSTREAM_KEY", raising=False)
    path = tmp_path / "up.yaml"
    path.write_text(f"name: up\ntargets: [{UPSTREAM}]\n")
    result = cli("deployments", "apply", str(path), ok=True)
    assert "'UPSTREAM_KEY' (api_key_env) is not set" in flat(result.output)
    assert "applied deployment up" in result.output


@pytest.fixture
def fake_uvicorn(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    calls: list[Any] = []
    module = types.ModuleType("uvicorn")
    module.run = lambda app, **kw: calls.append(app)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "uvicorn", module)
    return calls


def test_serve_stops_on_a_mistake_in_its_deployments_file(
    cli: Invoke, bot: None, tmp_path: Path, fake_uvicorn: list[Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.delenv("UPSTREAM_KEY", raising=False)
    path = tmp_path / "deployments.yaml"
    cases = {
        "name: d\ntargets: [{model: bot, alias: nosuch}]\n": "has no alias 'nosuch'",
        f"name: d\ntargets: [{UPSTREAM}]\n": "'UPSTREAM_KEY' (api_key_env) is not set",
    }  # fmt: skip
    for text, named in cases.items():
        path.write_text(text)
        result = cli("serve", "--port", "0", env={"LLMLOOP_DEPLOYMENTS_FILE": str(path)})
        assert result.exit_code == 2, result.output
        assert named in flat(result.output) and "Traceback" not in result.output
    assert fake_uvicorn == []  # it stopped before serving
