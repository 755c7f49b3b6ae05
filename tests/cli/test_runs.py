"""``llmloop runs``: create with params and inputs, log metrics, finish, list and show."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from typer.testing import Result

Invoke = Callable[..., Result]  # the `cli` fixture (tests/cli/conftest.py)


def test_run_lifecycle(cli: Invoke, cli_json: Callable[..., Any], rows_file: Path) -> None:
    dsv = cli_json("datasets", "add-version", "qa", "--file", str(rows_file))["id"]
    run = cli_json(
        "runs", "create", "--kind", "finetune", "--name", "ft", "--param", "lr=0.001",
        "--param", "model=tiny", "--input", f"{dsv}:train", "--tag", "team=ml",
    )  # fmt: skip
    assert run["status"] == "running" and run["params"] == {"lr": 0.001, "model": "tiny"}
    assert run["inputs"] == [{"id": dsv, "role": "train"}] and run["tags"] == {"team": "ml"}
    rid = run["id"]
    assert "logged 2 metrics" in cli("runs", "log", rid, "loss=1.5", "acc=0.25", ok=True).stdout
    cli("runs", "log", rid, "loss=0.5", "--step", "3", ok=True)
    series = cli_json("runs", "metrics", rid)
    assert [p["value"] for p in series["loss"]] == [1.5, 0.5]
    assert list(cli_json("runs", "metrics", rid, "--key", "acc")) == ["acc"]
    assert cli("runs", "metrics", rid, "--key", "nope").exit_code == 3
    shown = cli_json("runs", "show", rid)
    assert shown["latest_metrics"] == {"loss": 0.5, "acc": 0.25}
    finished = cli_json("runs", "finish", rid, "--status", "failed")
    assert finished["status"] == "failed"
    late = cli("runs", "log", rid, "loss=0.1")
    assert late.exit_code == 4
    assert [r["id"] for r in cli_json("runs", "list", "--status", "failed")] == [rid]
    assert cli_json("runs", "list", "--kind", "eval") == []
    assert rid in cli("runs", "list", ok=True).stdout


def test_bad_run_input(cli: Invoke) -> None:
    assert cli("runs", "create", "--kind", "nonsense").exit_code == 2
    assert cli("runs", "create", "--input", "dsv_01ABCDEFGHJKMNPQRSTVWXYZ00").exit_code == 3
    assert cli("runs", "create", "--input", "dsv_x:").exit_code == 2
    assert cli("runs", "create", "--param", "=1").exit_code == 2
    rid = cli("runs", "create", ok=True).stdout.strip()
    bad = cli("runs", "log", rid, "loss")
    assert bad.exit_code == 2 and "key=value" in bad.stderr
    assert cli("runs", "log", rid, "loss=nan").exit_code == 2
    assert cli("runs", "finish", rid, "--status", "running").exit_code == 2
    assert cli("runs", "show", "run_missing").exit_code == 3
