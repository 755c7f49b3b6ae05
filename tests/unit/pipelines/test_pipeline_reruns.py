"""Pipelines run again: a changed source file is read again (the cache keys what the inputs name,
not only their text), an unchanged rerun of a data step gives back its version instead of a
conflict, typos in params and inputs are refused up front, and Ctrl-C leaves no run 'running'."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel

from llmloop.config import load_settings
from llmloop.errors import ConfigError
from llmloop.plugins import build_registry
from llmloop.services.actors import local_actor
from llmloop.services.container import Container
from llmloop.services.pipelines import StepContext, load_pipeline


class Interrupted:
    """A step the user stops with Ctrl-C."""

    class Inputs(BaseModel):
        n: int = 0

    cache_version: ClassVar[str] = "1"

    def run(self, inputs: Any, ctx: StepContext) -> dict[str, Any]:
        raise KeyboardInterrupt


class StepsPlugin:
    from llmloop.hookspecs import hookimpl

    @staticmethod
    @hookimpl
    def register_pipeline_steps(register: Any) -> None:
        register("interrupted", Interrupted)


SPEC = """
name: data-prep
params: {export: rows.jsonl}
steps:
  - id: ingest
    uses: ingest
    with: {source: "${{ params.export }}", dataset: tickets}
  - id: clean
    uses: clean
    with: {dataset: tickets, recipe: recipe.yaml, version: "${{ steps.ingest.outputs.version }}"}
"""


@pytest.fixture
def container(tmp_path: Path) -> Iterator[Container]:
    registry = build_registry(extra_plugins=[StepsPlugin])
    c = Container(load_settings({"home": str(tmp_path / "home")}, env={}), plugins=registry)
    yield c
    c.close()


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    write_rows(tmp_path / "rows.jsonl", 4)
    (tmp_path / "recipe.yaml").write_text("name: tidy\nsteps:\n  - exact_dedup: {}\n")
    (tmp_path / "pipeline.yaml").write_text(SPEC)
    return tmp_path


def write_rows(path: Path, n: int) -> None:
    rows = (json.dumps({"prompt": f"question {i}?", "response": f"answer {i}."}) for i in range(n))
    path.write_text("".join(f"{row}\n" for row in rows))


def statuses(report: Any) -> list[str]:
    return [step.status for step in report.steps]


def test_changed_source_file_runs_again(container: Container, workdir: Path) -> None:
    spec = load_pipeline(workdir / "pipeline.yaml")
    first = container.pipelines.run(spec, local_actor())
    # Clean data: the recipe changes nothing, and the step gives back the ingested version.
    assert first.status == "finished", first.steps
    assert first.steps[1].outputs["version"] == first.steps[0].outputs["version"] == 1
    assert statuses(container.pipelines.run(spec, local_actor())) == ["cached", "cached"]
    write_rows(workdir / "rows.jsonl", 5)
    changed = container.pipelines.run(spec, local_actor())
    assert statuses(changed) == ["ran", "ran"]
    assert container.datasets.get_version("tickets").row_count == 5


def test_same_content_rerun_reuses_the_version(container: Container, workdir: Path) -> None:
    spec = load_pipeline(workdir / "pipeline.yaml")
    container.pipelines.run(spec, local_actor())
    rows = workdir / "rows.jsonl"
    stat = rows.stat()
    os.utime(rows, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched, not changed
    again = container.pipelines.run(spec, local_actor())
    assert again.status == "finished" and statuses(again) == ["ran", "cached"]
    assert again.steps[0].outputs["version"] == 1
    assert [v.version for v in container.datasets.list_versions("tickets")] == [1]


def test_edited_recipe_runs_the_clean_step_again(container: Container, workdir: Path) -> None:
    spec = load_pipeline(workdir / "pipeline.yaml")
    container.pipelines.run(spec, local_actor())
    (workdir / "recipe.yaml").write_text(
        "name: tidy\nsteps:\n  - length_filter: {min: 12}\n"  # drops "question 0?"-sized rows
    )
    again = container.pipelines.run(spec, local_actor())
    assert statuses(again) == ["cached", "ran"]


def test_unknown_params_and_inputs_are_refused(container: Container, workdir: Path) -> None:
    spec = load_pipeline(workdir / "pipeline.yaml")
    with pytest.raises(ConfigError, match=r"no parameter exprot .*export"):
        container.pipelines.run(spec, local_actor(), params={"exprot": "other.jsonl"})
    assert container.runs.list(kind="pipeline") == []
    assert [s.id for s in container.pipelines.check(spec)] == ["ingest", "clean"]
    typo = workdir / "typo.yaml"
    typo.write_text(SPEC.replace("dataset: tickets}", "datset: tickets}", 1))
    with pytest.raises(ConfigError, match=r"step 'ingest' .*unknown input.* datset"):
        container.pipelines.check(load_pipeline(typo))


def test_interrupt_marks_the_runs_killed(container: Container, workdir: Path) -> None:
    path = workdir / "stop.yaml"
    path.write_text("name: stop\nsteps:\n  - {id: wait, uses: interrupted, with: {n: 1}}\n")
    with pytest.raises(KeyboardInterrupt):
        container.pipelines.run(load_pipeline(path), local_actor())
    assert {r.kind: r.status for r in container.runs.list()} == {
        "pipeline": "killed",
        "step": "killed",
    }
