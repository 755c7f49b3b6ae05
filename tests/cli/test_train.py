"""`llmloop models init-base` and `llmloop train sft` from the command line, with bad settings
refused before any training starts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmloop.cli.main import app

pytest.importorskip("trl")


def test_init_base_then_sft(tmp_path: Path) -> None:
    runner = CliRunner()
    home = ["--home", str(tmp_path)]
    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        "".join(json.dumps({"prompt": f"q{i}?", "response": f"a{i}."}) + "\n" for i in range(20))
    )
    assert (
        runner.invoke(app, [*home, "datasets", "add-version", "qa", "--file", str(rows)]).exit_code
        == 0
    )
    made = runner.invoke(
        app,
        [
            *home,
            "models",
            "init-base",
            "base",
            "--dataset",
            "qa",
            "--set",
            "steps=5",
            "--set",
            "hidden_size=32",
            "--set",
            "layers=1",
            "--set",
            "heads=2",
            "--json",
        ],
    )
    assert made.exit_code == 0, made.output
    assert json.loads(made.stdout)["format"] == "hf"
    # init-base points champion at the new base, so `train sft --base base` (the README's
    # command, whose --base defaults to champion) finds it.
    shown = runner.invoke(app, [*home, "models", "show", "base", "--json"])
    assert json.loads(shown.stdout)["aliases"] == {"champion": 1}
    for setting, message in (
        ("lora.target_modules=[nosuch]", "not modules of the base model"),
        ("max_steps=0", "max_steps must be at least 1"),
    ):
        refused = runner.invoke(
            app,
            [*home, "train", "sft", "--base", "base", "--dataset", "qa", "--out", "bot",
             "--set", setting],
        )  # fmt: skip
        assert refused.exit_code == 2 and message in refused.output, refused.output
    bad = runner.invoke(
        app,
        [
            *home,
            "train",
            "sft",
            "--base",
            "base@1",
            "--dataset",
            "qa",
            "--out",
            "bot",
            "--set",
            "learning_rat=1",
        ],
    )
    assert bad.exit_code == 2 and "learning_rat" in bad.output
    tuned = runner.invoke(
        app,
        [
            *home,
            "train",
            "sft",
            "--base",
            "base",
            "--dataset",
            "qa",
            "--out",
            "bot",
            "--set",
            "max_steps=2",
            "--set",
            "lora.r=4",
            "--json",
        ],
    )
    assert tuned.exit_code == 0, tuned.output
    assert json.loads(tuned.stdout)["format"] == "peft-lora"
    assert (
        runner.invoke(
            app,
            [
                *home,
                "train",
                "sft",
                "--base",
                "base@1",
                "--dataset",
                "qa",
                "--out",
                "bot",
                "--set",
                "nonsense",
            ],
        ).exit_code
        == 2
    )


def test_training_errors_are_one_line_and_hpo_runs_without_a_space(tmp_path: Path) -> None:
    runner = CliRunner()
    home = ["--home", str(tmp_path)]

    def add(name: str, rows: list[dict[str, object]]) -> None:
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
        added = runner.invoke(app, [*home, "datasets", "add-version", name, "--file", str(path)])
        assert added.exit_code == 0, added.output

    add("qa", [{"prompt": f"q{i}?", "response": f"a{i}."} for i in range(8)])
    add("mixed", [{"prompt": "q?", "response": "a."}, {"text": "plain words"}])
    add("long", [{"prompt": "word " * 300, "response": "ok"}])
    made = runner.invoke(
        app,
        [*home, "models", "init-base", "base", "--dataset", "qa", "--set", "steps=2",
         "--set", "hidden_size=32", "--set", "layers=1", "--set", "heads=2"],
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    small = ["--set", "max_steps=1", "--set", "batch_size=2"]
    for dataset, extra, message in (
        ("mixed", [], "row 1 is shaped as text but row 0 as instruction"),
        ("long", ["--set", "max_length=32"], "no train row keeps a trained token"),
    ):
        refused = runner.invoke(
            app,
            [*home, "train", "sft", "--base", "base", "--dataset", dataset, "--out", "bot",
             *small, *extra],
        )  # fmt: skip
        assert refused.exit_code == 2, refused.output
        lines = [line for line in refused.output.splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and message in lines[0] and "unexpected" not in refused.output
    # The README's search gives no --space: the default one (learning rate, LoRA rank) is used,
    # and the trials live beside the llmloop database, which Optuna cannot share.
    searched = runner.invoke(
        app,
        [*home, "train", "hpo", "--base", "base", "--dataset", "qa", "--eval", "qa",
         "--out", "bot", "--search", "n_trials=2", *small, "--json"],
    )  # fmt: skip
    assert searched.exit_code == 0, searched.output
    trials = json.loads(searched.stdout)["study"]["trials"]
    assert [t["state"] for t in trials] == ["COMPLETE", "COMPLETE"]
