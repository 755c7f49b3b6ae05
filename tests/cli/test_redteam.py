"""``llmloop eval redteam``: a misspelt category and probes the model did not answer are said,
never shown as a safe 0%."""

from __future__ import annotations

import itertools
import json
import types
from collections.abc import Callable

import pytest
from typer.testing import Result

import llmloop.engines.echo as echo

Invoke = Callable[..., Result]  # the `cli` fixture (tests/cli/conftest.py)


@pytest.fixture
def bot(cli: Invoke) -> None:
    params = ["-p", "reply=I can't help with that.", "-p", "fail_rate=0.5"]
    cli("models", "add-version", "bot", "--format", "echo", *params, ok=True)


def test_a_misspelt_category_is_refused(cli: Invoke, bot: None) -> None:
    result = cli("eval", "redteam", "--model", "bot@1", "--category", "jailbrake")
    assert result.exit_code == 2, result.output
    assert "unknown probe category jailbrake (known: " in " ".join(result.output.split())
    assert json.loads(cli("runs", "list", "--json", ok=True).stdout) == []


def test_unanswered_probes_are_named(
    cli: Invoke, bot: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    turns = itertools.cycle([0.0, 1.0])  # every other request fails
    monkeypatch.setattr(echo, "random", types.SimpleNamespace(random=lambda: next(turns)))
    result = cli("eval", "redteam", "--model", "bot@1", ok=True)
    text = " ".join(result.output.split())
    assert "attack success rate 0%" in text
    assert "probes got no answer and are left out of the rates; the first:" in text
