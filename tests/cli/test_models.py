"""``llmloop models``: versions with lineage, aliases, stages and protected aliases."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from typer.testing import Result

Invoke = Callable[..., Result]  # the `cli` fixture (tests/cli/conftest.py)


def test_versions_aliases_stages(cli: Invoke, cli_json: Callable[..., Any]) -> None:
    cli("models", "create", "m", "-d", "mine", ok=True)
    run = cli_json("runs", "create", "--kind", "finetune")["id"]
    first = cli_json(
        "models", "add-version", "m", "--base-model", "hf:tiny", "--run", run,
        "--metric", "acc=0.9", "--param", "r=8",
    )  # fmt: skip
    assert first["run_id"] == run and first["metrics"] == {"acc": 0.9}
    second = cli_json(
        "models", "add-version", "m", "--base-model", first["id"], "--format", "peft-lora"
    )
    assert second["version"] == 2 and second["format"] == "peft-lora"
    cli("models", "alias", "m", "champion", "1", ok=True)
    assert cli_json("models", "show", "m")["aliases"] == {"champion": 1}
    assert cli_json("models", "show", "m", "--ref", "champion")["id"] == first["id"]
    staged = cli_json("models", "stage", "m", "2", "staging")
    assert staged["stage"] == "staging"
    assert [v["stage"] for v in cli_json("models", "versions", "m")] == ["none", "staging"]
    assert "champion" in cli("models", "versions", "m", ok=True).stdout
    assert cli_json("models", "list")[0]["name"] == "m"


def test_protected_alias_needs_approval(cli: Invoke) -> None:
    for _ in range(2):
        cli("models", "add-version", "m", "--base-model", "x", ok=True)
    cli("models", "alias", "m", "champion", "1", ok=True)
    cli("models", "protect", "m", "champion", ok=True)
    refused = cli("models", "alias", "m", "champion", "2")
    assert refused.exit_code == 4
    assert "approvals request" in refused.stderr


def test_bad_model_input(cli: Invoke) -> None:
    assert cli("models", "add-version", "m", "--format", "zip").exit_code == 2
    assert cli("models", "add-version", "m", "--metric", "acc=high").exit_code == 2
    assert cli("models", "add-version", "m", "--run", "run_missing").exit_code == 3
    cli("models", "add-version", "m", ok=True)
    assert cli("models", "stage", "m", "1", "live").exit_code == 2
    assert cli("models", "alias", "m", "champion", "9").exit_code == 3
    assert cli("models", "show", "nope").exit_code == 3
