"""Approvals (four eyes with ``--as``), the audit log, lineage trees and API keys."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from typer.testing import Result

Invoke = Callable[..., Result]  # the `cli` fixture (tests/cli/conftest.py)


def _protected_model(cli: Invoke) -> None:
    for _ in range(2):
        cli("models", "add-version", "m", "--base-model", "x", ok=True)
    cli("models", "alias", "m", "champion", "1", ok=True)
    cli("models", "protect", "m", "champion", ok=True)


def test_approval_by_a_second_person_moves_the_alias(
    cli: Invoke, cli_json: Callable[..., Any]
) -> None:
    _protected_model(cli)
    request = cli_json(
        "--as", "alice", "approvals", "request", "--kind", "model_alias", "--name", "m",
        "--label", "champion", "--version", "2", "--comment", "better",
    )  # fmt: skip
    assert request["status"] == "pending" and request["requested_by"] == "alice"
    own = cli("approvals", "approve", request["id"], "--as", "alice")
    assert own.exit_code == 5 and "someone else" in own.stderr
    approved = cli("approvals", "approve", request["id"], "--as", "bob", "-c", "ok", ok=True)
    assert "approved by bob" in approved.stdout
    assert cli_json("models", "show", "m")["aliases"] == {"champion": 2}
    shown = cli_json("approvals", "show", request["id"])
    assert shown["decided_by"] == "bob" and shown["decision_comment"] == "ok"
    assert cli_json("approvals", "list", "--status", "pending") == []
    again = cli("--as", "bob", "approvals", "reject", request["id"])
    assert again.exit_code == 4
    assert request["id"] in cli("approvals", "list", ok=True).stdout


def test_rejection_and_prompt_label_request(cli: Invoke, cli_json: Callable[..., Any]) -> None:
    for text in ("a", "b"):
        cli("prompts", "add-version", "p", "-t", text, ok=True)
    cli("prompts", "label", "p", "production", "1", ok=True)
    cli("prompts", "protect", "p", "production", ok=True)
    request_id = cli(
        "approvals", "request", "--kind", "prompt_label", "--name", "p",
        "--label", "production", "--version", "2", "--as", "carol", ok=True,
    ).stdout.strip()  # fmt: skip
    cli("--as", "dave", "approvals", "reject", request_id, ok=True)
    assert cli_json("prompts", "show", "p")["labels"] == {"production": 1}
    bad_kind = cli(
        "approvals", "request", "--kind", "dataset", "--name", "p", "--label", "x", "--version", "1"
    )
    assert bad_kind.exit_code == 2 and "kind" in bad_kind.stderr
    assert cli("approvals", "show", "apr_missing").exit_code == 3


def test_audit_log(cli: Invoke, cli_json: Callable[..., Any]) -> None:
    created = cli_json("datasets", "create", "qa")
    cli("--as", "erin", "prompts", "create", "p", ok=True)
    entries = cli_json("audit")
    assert [e["action"] for e in entries] == ["dataset.create", "prompt.create"]
    assert cli_json("audit", "--entity", created["id"])[0]["action"] == "dataset.create"
    assert [e["actor"] for e in cli_json("audit", "--after", str(entries[0]["id"]))] == ["erin"]
    assert len(cli_json("audit", "--limit", "1")) == 1
    assert "dataset.create" in cli("audit", ok=True).stdout


def test_lineage_tree_and_graph(cli: Invoke, cli_json: Callable[..., Any], rows_file: Path) -> None:
    dsv = cli_json("datasets", "add-version", "qa", "--file", str(rows_file))["id"]
    run = cli_json("runs", "create", "--name", "ft", "--input", f"{dsv}:train")["id"]
    mv = cli_json("models", "add-version", "m", "--run", run, "--input", dsv)["id"]
    graph = cli_json("lineage", mv, "--direction", "up")
    assert graph["root"] == mv and {n["id"] for n in graph["nodes"]} == {mv, run, dsv}
    tree = cli("lineage", run, ok=True).stdout
    assert "upstream" in tree and "downstream" in tree and "qa:v1" in tree and "m:v1" in tree
    down = cli("lineage", dsv, "--direction", "down", ok=True).stdout
    assert "train" in down and "produced" in down
    assert cli("lineage", dsv, "--direction", "sideways").exit_code == 2
    assert cli("lineage", "run_missing").exit_code == 3


def test_api_keys(cli: Invoke, cli_json: Callable[..., Any]) -> None:
    created = cli("keys", "create", "ci", "--role", "editor", "--limit", "rpm=60", ok=True)
    secret = created.stdout.strip().splitlines()[-1]
    assert secret.startswith("llk_") and "only once" in created.stderr
    keys = cli_json("keys", "list")
    assert len(keys) == 1 and keys[0]["limits"] == {"rpm": 60.0} and "secret" not in keys[0]
    assert secret not in cli("keys", "list", ok=True).stdout
    assert cli_json("keys", "revoke", keys[0]["id"])["revoked_at"] is not None
    assert cli_json("keys", "list") == []
    assert len(cli_json("keys", "list", "--all")) == 1
    assert cli("keys", "revoke", keys[0]["id"]).exit_code == 4
    assert cli("keys", "create", "x", "--role", "root").exit_code == 2
    assert cli("keys", "create", "x", "--limit", "rpm").exit_code == 2
    assert cli("keys", "revoke", "key_missing").exit_code == 3
