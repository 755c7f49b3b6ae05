"""``llmloop prompts``: versions, render, diff, labels and protection."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from typer.testing import Result

Invoke = Callable[..., Result]  # the `cli` fixture (tests/cli/conftest.py)


def test_versions_render_diff(cli: Invoke, cli_json: Callable[..., Any], tmp_path: Path) -> None:
    cli("prompts", "create", "greet", "-d", "hello", ok=True)
    first = cli_json(
        "prompts", "add-version", "greet", "--template", "Hello {{ name }}",
        "--param", "temperature=0.2", "--param", "stop=[\"\\n\"]", "-m", "first",
    )  # fmt: skip
    assert first["params"] == {"temperature": 0.2, "stop": ["\n"]}
    assert first["variables"] == ["name"]
    template = tmp_path / "t.j2"
    template.write_text("Hi {{ name }} from {{ place }}", encoding="utf-8")
    second = cli_json(
        "prompts", "add-version", "greet", "--template-file", str(template),
        "--variables", "name, place",
    )  # fmt: skip
    assert second["version"] == 2 and second["variables"] == ["name", "place"]
    out = cli("prompts", "render", "greet", "--var", "name=Ada", "--ref", "1", ok=True).stdout
    assert out.strip() == "Hello Ada"
    rendered = cli_json(
        "prompts", "render", "greet", "--ref", "latest", "--var", "name=Ada", "--var", "place=Oz"
    )
    assert rendered["text"] == "Hi Ada from Oz" and rendered["version"] == 2
    diff = cli_json("prompts", "diff", "greet", "1", "2")
    assert diff["variables_added"] == ["place"] and "temperature" in diff["params_changed"]
    text = cli("prompts", "diff", "greet", "1", "2", ok=True).stdout
    assert "-Hello {{ name }}" in text and "+Hi {{ name }} from {{ place }}" in text
    assert [v["version"] for v in cli_json("prompts", "versions", "greet")] == [1, 2]
    assert cli_json("prompts", "show", "greet", "--ref", "2")["template"].startswith("Hi")
    assert cli_json("prompts", "list")[0]["latest_version"] == 2


def test_labels_and_protection(cli: Invoke, cli_json: Callable[..., Any]) -> None:
    for text in ("v1 {{ x }}", "v2 {{ x }}"):
        cli("prompts", "add-version", "p", "-t", text, ok=True)
    missing = cli("prompts", "render", "p", "--var", "x=1")
    assert missing.exit_code == 3 and "production" in missing.stderr
    cli("prompts", "label", "p", "production", "1", ok=True)
    assert cli("prompts", "render", "p", "--var", "x=1", ok=True).stdout.strip() == "v1 1"
    cli("prompts", "protect", "p", "production", ok=True)
    refused = cli("prompts", "label", "p", "production", "2")
    assert refused.exit_code == 4 and "approvals" in refused.stderr
    cli("prompts", "protect", "p", "production", "--off", ok=True)
    cli("prompts", "label", "p", "production", "2", ok=True)
    assert cli_json("prompts", "show", "p")["labels"] == {"production": 2}
    assert "production" in cli("prompts", "versions", "p", ok=True).stdout


def test_bad_input(cli: Invoke) -> None:
    both = cli("prompts", "add-version", "p", "-t", "x", "--template-file", "f.j2")
    assert both.exit_code == 2 and "exactly one" in both.stderr
    assert cli("prompts", "add-version", "p").exit_code == 2
    bad_pair = cli("prompts", "add-version", "p", "-t", "x", "--param", "temperature")
    assert bad_pair.exit_code == 2 and "key=value" in bad_pair.stderr
    undeclared = cli("prompts", "add-version", "p", "-t", "{{ a }} {{ b }}", "--variables", "a")
    assert undeclared.exit_code == 2 and "b" in undeclared.stderr
    cli("prompts", "add-version", "p", "-t", "{{ a }}", ok=True)
    no_var = cli("prompts", "render", "p", "--ref", "1")
    assert no_var.exit_code == 2 and "variable" in no_var.stderr
    assert cli("prompts", "show", "nope").exit_code == 3


def test_template_bombs_are_clear_errors(cli: Invoke) -> None:
    # Jinja folds constant arithmetic while reading a template: creating it must not hang.
    made = cli("prompts", "add-version", "p", "-t", "{{ 99999 ** 99999 ** 9 }}")
    assert made.exit_code == 0, made.output
    power = cli("prompts", "render", "p", "--ref", "1")
    assert power.exit_code == 2 and "too large a number" in power.stderr
    cli("prompts", "add-version", "p", "-t", '{{ "x" * 10**10 }}{{ q }}', ok=True)
    repeat = cli("prompts", "render", "p", "--ref", "2", "--var", "q=1")
    assert repeat.exit_code == 2 and "refused by the sandbox" in repeat.stderr
    assert "Traceback" not in repeat.output and "please report" not in repeat.output
