"""``llmloop datasets``: create, add versions from JSONL, list, show, and bad files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from typer.testing import Result

Invoke = Callable[..., Result]  # the `cli` fixture (tests/cli/conftest.py)


def test_create_add_version_list_show(
    cli: Invoke, cli_json: Callable[..., Any], rows_file: Path
) -> None:
    assert "created dataset qa" in cli("datasets", "create", "qa", "-d", "maths", ok=True).stdout
    version = cli_json("datasets", "add-version", "qa", "--file", str(rows_file))
    assert version["version"] == 1 and version["row_count"] == 2
    assert version["shape"] == "instruction"
    assert version["schema"] == {"prompt": "string", "response": "string"}
    listed = cli_json("datasets", "list")
    assert [(d["name"], d["latest_version"]) for d in listed] == [("qa", 1)]
    shown = cli_json("datasets", "show", "qa", "--version", "latest", "--head", "1")
    assert shown["id"] == version["id"] and shown["head"] == [{"prompt": "2+2?", "response": "4"}]
    assert cli_json("datasets", "show", "qa")["description"] == "maths"
    assert [v["version"] for v in cli_json("datasets", "versions", "qa")] == [1]
    table = cli("datasets", "versions", "qa", ok=True).stdout
    assert version["id"] in table


def test_second_version_with_parent_and_duplicate_content(
    cli: Invoke, cli_json: Callable[..., Any], rows_file: Path, tmp_path: Path
) -> None:
    cli("datasets", "add-version", "qa", "--file", str(rows_file), ok=True)
    more = tmp_path / "more.jsonl"
    more.write_text('{"text": "hello"}\n', encoding="utf-8")
    second = cli_json("datasets", "add-version", "qa", "-f", str(more), "--parent", "1")
    assert second["version"] == 2 and second["parent_id"] is not None
    again = cli("datasets", "add-version", "qa", "--file", str(rows_file))
    assert again.exit_code == 4 and "version 1" in again.stderr


def test_malformed_line_names_the_line(cli: Invoke, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"a": 1}\n{"a": 2}\n{"a": \n', encoding="utf-8")
    result = cli("datasets", "add-version", "qa", "--file", str(bad))
    assert result.exit_code == 2
    assert "line 3" in result.stderr and "Traceback" not in result.output


def test_non_object_line_and_empty_file(cli: Invoke, tmp_path: Path) -> None:
    listy = tmp_path / "list.jsonl"
    listy.write_text('{"a": 1}\n[1, 2]\n', encoding="utf-8")
    result = cli("datasets", "add-version", "qa", "--file", str(listy))
    assert result.exit_code == 2 and "line 2 must be a JSON object" in result.stderr
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    assert cli("datasets", "add-version", "qa", "--file", str(empty)).exit_code == 2


def test_missing_file_is_a_clear_error(cli: Invoke, tmp_path: Path) -> None:
    result = cli("datasets", "add-version", "qa", "--file", str(tmp_path / "absent.jsonl"))
    assert result.exit_code == 2
    assert "absent.jsonl" in result.stderr and "Traceback" not in result.output


def test_unknown_dataset_and_version(cli: Invoke, rows_file: Path) -> None:
    assert cli("datasets", "versions", "nope").exit_code == 3
    cli("datasets", "add-version", "qa", "--no-create", "--file", str(rows_file))
    assert cli("datasets", "show", "qa").exit_code == 3
    cli("datasets", "add-version", "qa", "--file", str(rows_file), ok=True)
    result = cli("datasets", "show", "qa", "--version", "7")
    assert result.exit_code == 3 and "no version 7" in result.stderr
