"""``llmloop pipeline`` as a CI job runs it: a mistake in the file is one line naming the step
(exit 2, nothing run); a failing step fails the run (exit 12), and the rerun after the fix resumes
at that step with the earlier ones served from the cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.cli.conftest import Invoke

SPEC = """
name: prep
params: {export: rows.jsonl, recipe: recipe.yaml}
steps:
  - id: ingest
    uses: ingest
    with: {source: "${{ params.export }}", dataset: tickets}
  - id: clean
    uses: clean
    with:
      dataset: tickets
      recipe: "${{ params.recipe }}"
      version: "${{ steps.ingest.outputs.version }}"
  - id: split
    uses: split
    with:
      dataset: tickets
      version: "${{ steps.clean.outputs.version }}"
      config: {ratios: {train: 0.5, test: 0.5}}
"""


def write_inputs(folder: Path) -> Path:
    rows = (json.dumps({"prompt": f"question {i}?", "response": f"answer {i}."}) for i in range(8))
    (folder / "rows.jsonl").write_text("".join(f"{row}\n" for row in rows))
    (folder / "pipeline.yaml").write_text(SPEC)
    return folder / "pipeline.yaml"


def test_a_mistake_is_one_line_naming_the_step(cli: Invoke, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(SPEC.replace("uses: split", "uses: splitt"))
    result = cli("pipeline", "run", str(path))
    assert result.exit_code == 2
    assert "step 'split': no pipeline step named 'splitt'" in result.output
    assert "Traceback" not in result.output
    path.write_text(SPEC.replace("uses: split", "uses: split\n    retries: many"))
    result = cli("pipeline", "validate", str(path))
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "step 'split' (split): retries: Input should be a valid integer" in result.output


def test_a_failed_step_fails_the_run_and_the_rerun_resumes(
    cli: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_inputs(tmp_path)
    monkeypatch.chdir(tmp_path)
    failed = cli("pipeline", "run", str(path), "--json")
    assert failed.exit_code == 12, failed.output
    report = json.loads(failed.stdout)
    assert [s["status"] for s in report["steps"]] == ["ran", "failed", "skipped"]
    assert "recipe.yaml" in report["steps"][1]["error"]
    (tmp_path / "recipe.yaml").write_text("name: tidy\nsteps:\n  - exact_dedup: {}\n")
    again = json.loads(cli("pipeline", "run", str(path), "--json", ok=True).stdout)
    assert [s["status"] for s in again["steps"]] == ["cached", "ran", "ran"]
    assert again["steps"][0]["run_id"] == report["steps"][0]["run_id"]
