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
