"""Docs that cannot drift: the settings reference matches the code, and every setting and every
top-level CLI command group is mentioned where a user looks for it."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from llmloop.cli.main import app
from llmloop.config import Settings, settings_reference

ROOT = Path(__file__).resolve().parents[3]


def test_settings_reference_is_generated_from_the_code() -> None:
    on_disk = (ROOT / "docs" / "settings.md").read_text()
    assert on_disk == settings_reference(), "run: llmloop config docs > docs/settings.md"
    for name, field in Settings.model_fields.items():
        assert field.description, f"setting {name} has no description"


def test_engine_options_reference_is_generated_from_the_code() -> None:
    from llmloop.services.engine_options import engine_options_reference

    on_disk = (ROOT / "docs" / "engines.md").read_text()
    assert on_disk == engine_options_reference(), (
        "run: llmloop config docs --engines > docs/engines.md"
    )
    result = CliRunner().invoke(app, ["config", "docs", "--engines"])
    assert result.exit_code == 0 and result.output == on_disk
    assert "| tool_parser |" in on_disk and "| multimodal |" in on_disk


def test_every_command_group_has_help() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for group in (
        "data",
        "datasets",
        "prompts",
        "runs",
        "models",
        "train",
        "eval",
        "deployments",
        "feedback",
        "monitor",
        "drift",
        "alerts",
        "curate",
        "rollout",
        "pipeline",
        "approvals",
        "audit",
        "lineage",
        "keys",
        "serve",
        "config",
        "db",
        "demo",
    ):
        assert group in result.output, group
        sub = CliRunner().invoke(app, [group, "--help"])
        assert sub.exit_code == 0, (group, sub.output)
