"""Inputs a new user tries that the happy path does not: odd files, odd names, odd numbers, a
closed pipe and Ctrl-C. Each is a one-line message and a non-zero exit, or the right result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import Result

from llmloop.cli.evals import describe_rule
from llmloop.cli.output import say

Invoke = Callable[..., Result]  # the `cli` fixture (tests/cli/conftest.py)


def test_jsonl_with_unicode_line_separators_in_strings(cli: Invoke, tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    text = "one\u2028two\x85three"  # valid unescaped in JSON; str.splitlines() splits on them
    path.write_text(
        json.dumps({"prompt": text, "response": "ok"}, ensure_ascii=False) + "\r\n",
        encoding="utf-8",
    )
    made = cli("datasets", "add-version", "d", "--file", str(path), "--json", ok=True)
    assert json.loads(made.stdout)["row_count"] == 1


def test_semicolon_csv_and_unknown_encoding(
    cli: Invoke, cli_json: Callable[..., Any], tmp_path: Path
) -> None:
    path = tmp_path / "export.csv"
    path.write_bytes(b'\xef\xbb\xbfprompt;response\r\nhi;"hello; there"\r\nbye;ciao\r\n')
    made = cli_json("data", "ingest", str(path), "--dataset", "semi")
    assert made["report"]["columns"] == ["prompt", "response"]
    assert made["version"]["row_count"] == 2 and made["version"]["shape"] == "instruction"
    bad = cli("data", "ingest", str(path), "--dataset", "x", "--encoding", "bogus")
    assert bad.exit_code == 2 and "unknown encoding 'bogus'" in bad.stderr
    assert "report this" not in bad.stderr


def test_labels_and_aliases_must_be_reachable_names(cli: Invoke) -> None:
    cli("models", "add-version", "m", "--format", "echo", ok=True)
    for alias in ("3", "latest", "a@b", "with space", ""):
        refused = cli("models", "alias", "m", alias, "1")
        assert refused.exit_code == 2 and "cannot be a label or alias" in refused.stderr, alias
    cli("models", "alias", "m", "champion-2", "1", ok=True)
    cli("prompts", "add-version", "p", "--template", "hi", ok=True)
    assert cli("prompts", "label", "p", "7", "1").exit_code == 2


def test_key_limits_are_checked_when_the_key_is_made(cli: Invoke) -> None:
    for limit in ("rpm=-5", "rmp=10", "rpm=1.5", "max_concurrent=2.5"):
        refused = cli("keys", "create", "k", "--limit", limit)
        assert refused.exit_code == 2 and "llk_" not in refused.stdout, limit
    cli("keys", "create", "k", "--limit", "rpm=10", "--limit", "budget_usd=2.5", ok=True)


def test_rollout_needs_a_positive_minimum(cli: Invoke) -> None:
    refused = cli("rollout", "evaluate", "support", "--model", "m", "--min-requests", "0")
    assert refused.exit_code == 2


def test_unknown_artifact_protocol_is_a_config_error(cli: Invoke, tmp_path: Path) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"text": "x"}\n')
    refused = cli(
        "--artifacts-url", "nosuch://x", "datasets", "add-version", "d", "--file", str(rows)
    )
    assert refused.exit_code == 2 and "cannot use artifacts_url" in refused.stderr


def test_unknown_evaluator_is_named_before_the_model_loads(cli: Invoke, tmp_path: Path) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"prompt": "q", "response": "a"}\n')
    cli("datasets", "add-version", "d", "--file", str(rows), ok=True)
    cli("models", "add-version", "m", "--format", "hf", ok=True)  # no weights: cannot load
    suite = tmp_path / "suite.yaml"
    suite.write_text("name: s\nfields: {input: prompt, reference: response}\n"
                     "evaluators:\n  - name: no_such_metric\n")  # fmt: skip
    refused = cli("eval", "run", str(suite), "--model", "m@1", "--dataset", "d")
    assert refused.exit_code == 3 and "no evaluator named 'no_such_metric'" in refused.stderr


def test_gate_lines_say_what_each_rule_did() -> None:
    passed = {"rule": "rougeL >= baseline - 0.01", "status": "passed", "candidate": 0.25,
              "threshold": 0.2, "reason": ""}  # fmt: skip
    assert (
        describe_rule(passed) == "PASS  rougeL >= baseline - 0.01  (candidate 0.25, threshold 0.2)"
    )
    skipped = {"rule": "bleu >= baseline", "status": "skipped", "reason": "no baseline report"}
    assert describe_rule(skipped) == "SKIP  bleu >= baseline  (no baseline report)"
    failed = {"rule": "x >= 1", "status": "failed", "candidate": None, "reason": "metric not in"}
    assert describe_rule(failed).startswith("FAIL  x >= 1  (metric not in")


def test_long_messages_stay_one_line_when_piped(capsys: pytest.CaptureFixture[str]) -> None:
    say(json.dumps({f"metric_{i}": i / 7 for i in range(30)}))
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and json.loads(out)


def test_ctrl_c_is_one_line_and_exit_130(cli: Invoke, monkeypatch: pytest.MonkeyPatch) -> None:
    from llmloop.services.datasets import DatasetService

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(DatasetService, "list", interrupted)  # as if Ctrl-C came mid-command
    result = cli("datasets", "list")
    assert result.exit_code == 130 and result.stderr == "interrupted\n"


@pytest.mark.parametrize("args", [["audit", "--json"], ["prompts", "render", "p", "--var", "x=1"]])
def test_closed_pipe_is_quiet(tmp_path: Path, args: list[str]) -> None:
    """`llmloop ... | head`: the reader is gone; no traceback and no 'please report this'."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMLOOP_")}
    env["LLMLOOP_HOME"] = str(tmp_path)
    main = [sys.executable, "-m", "llmloop.cli.main"]
    setup = ["prompts", "add-version", "p", "--template", "{{ x }}"]
    subprocess.run([*main, *setup], env=env, check=True, capture_output=True)
    subprocess.run([*main, "prompts", "label", "p", "production", "1"], env=env, check=True,
                   capture_output=True)  # fmt: skip
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run([*main, *args], env=env, stdout=write, stderr=subprocess.PIPE)
    finally:
        os.close(write)
    assert done.returncode == 1
    assert done.stderr.decode() == ""


def test_sdk_refuses_an_empty_dataset_version(tmp_path: Path) -> None:
    """As `datasets add-version` and `data ingest` already do: nothing could train on it."""
    from llmloop import Client
    from llmloop.config import load_settings
    from llmloop.errors import InvalidInputError

    client = Client(settings=load_settings({"home": str(tmp_path)}, env={}))
    with pytest.raises(InvalidInputError, match="at least one row"):
        client.create_dataset_version("tickets", [])
