"""The pipeline runner: order by references, typed inputs, caching by input hash (an unchanged
step is skipped and says so), retries on failure, a run per step, and lineage to outputs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel

from llmloop.config import load_settings
from llmloop.core.datasets import DatasetVersionCreate
from llmloop.core.pipelines import PipelineSpec
from llmloop.errors import ConfigError
from llmloop.plugins import build_registry
from llmloop.services.actors import local_actor
from llmloop.services.container import Container
from llmloop.services.pipelines import StepContext, load_pipeline

CALLS: list[str] = []


class MakeRows:
    class Inputs(BaseModel):
        dataset: str
        n: int

    cache_version: ClassVar[str] = "1"

    def run(self, inputs: Any, ctx: StepContext) -> dict[str, Any]:
        CALLS.append("make")
        rows = [{"text": f"row {i}"} for i in range(inputs.n)]
        dv = ctx.container.datasets.create_version(
            inputs.dataset, DatasetVersionCreate(rows=rows), ctx.actor
        )
        return {"dataset_version": dv.id, "rows": inputs.n}


class Count:
    class Inputs(BaseModel):
        dataset_version: str
        threshold: int = 0

    cache_version: ClassVar[str] = "1"
    failures_left: ClassVar[int] = 0

    def run(self, inputs: Any, ctx: StepContext) -> dict[str, Any]:
        CALLS.append("count")
        if Count.failures_left:
            Count.failures_left -= 1
            raise RuntimeError("flaky")
        version = ctx.container.datasets.get_version_by_id(inputs.dataset_version)
        return {"count": version.row_count, "passed": version.row_count >= inputs.threshold}


class StepsPlugin:
    from llmloop.hookspecs import hookimpl

    @staticmethod
    @hookimpl
    def register_pipeline_steps(register: Any) -> None:
        register("make_rows", MakeRows)
        register("count", Count)


SPEC = """
name: demo-pipeline
params: {n: 3}
steps:
  - id: count
    uses: count
    retries: 2
    retry_backoff_s: 0
    with: {dataset_version: "${{ steps.make.outputs.dataset_version }}", threshold: 2}
  - id: make
    uses: make_rows
    with: {dataset: tickets, n: "${{ params.n }}"}
"""


@pytest.fixture
def container(tmp_path: Path) -> Iterator[Container]:
    registry = build_registry(extra_plugins=[StepsPlugin])
    c = Container(load_settings({"home": str(tmp_path)}, env={}), plugins=registry)
    CALLS.clear()
    Count.failures_left = 0
    yield c
    c.close()


def write_spec(tmp_path: Path, text: str = SPEC) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    return path


def test_runs_in_dependency_order_and_records_runs(container: Container, tmp_path: Path) -> None:
    spec = load_pipeline(write_spec(tmp_path))
    report = container.pipelines.run(spec, local_actor())
    assert report.status == "finished" and CALLS == ["make", "count"]
    count = next(s for s in report.steps if s.id == "count")
    assert count.outputs == {"count": 3, "passed": True}
    parent = container.runs.get(report.run_id)
    assert parent.kind == "pipeline" and parent.status == "finished"
    steps = container.runs.list(parent_id=report.run_id)
    assert {r.name for r in steps} == {"demo-pipeline/make", "demo-pipeline/count"}
    make = next(s for s in report.steps if s.id == "make")
    graph = container.governance.lineage(make.outputs["dataset_version"], "up")
    assert make.run_id in {n.id for n in graph.nodes}


def test_unchanged_steps_are_cached(container: Container, tmp_path: Path) -> None:
    spec = load_pipeline(write_spec(tmp_path))
    container.pipelines.run(spec, local_actor())
    CALLS.clear()
    again = container.pipelines.run(spec, local_actor())
    assert CALLS == [] and {s.status for s in again.steps} == {"cached"}
    changed = container.pipelines.run(spec, local_actor(), params={"n": 4})
    assert [s.status for s in changed.steps] == ["ran", "ran"] and CALLS == ["make", "count"]


def test_retries_then_failure_is_recorded(container: Container, tmp_path: Path) -> None:
    spec = load_pipeline(write_spec(tmp_path))
    Count.failures_left = 2
    ok = container.pipelines.run(spec, local_actor())
    assert ok.status == "finished" and ok.steps[-1].attempts == 3
    Count.failures_left = 5
    failed = container.pipelines.run(spec, local_actor(), params={"n": 5})
    assert failed.status == "failed"
    count = next(s for s in failed.steps if s.id == "count")
    assert count.status == "failed" and "flaky" in (count.error or "")
    assert container.runs.get(count.run_id or "").status == "failed"
    assert container.runs.get(failed.run_id).status == "failed"


def test_bad_specs_are_config_errors(container: Container, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cycle"):
        PipelineSpec.model_validate({"name": "p", "steps": [
            {"id": "a", "uses": "count", "with": {"x": "${{ steps.b.outputs.y }}"}},
            {"id": "b", "uses": "count", "with": {"x": "${{ steps.a.outputs.y }}"}}]})  # fmt: skip
    with pytest.raises(ConfigError, match="unknown steps"):
        PipelineSpec.model_validate({"name": "p", "steps": [
            {"id": "a", "uses": "count", "with": {"x": "${{ steps.zz.outputs.y }}"}}]})  # fmt: skip
    with pytest.raises(ConfigError, match="does not exist"):
        load_pipeline(tmp_path / "missing.yaml")
    bad_yaml = write_spec(tmp_path, "name: [")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_pipeline(bad_yaml)
    wrong_input = write_spec(tmp_path, SPEC.replace("n: 3", "n: lots"))
    with pytest.raises(ConfigError, match="step 'make'"):
        container.pipelines.run(load_pipeline(wrong_input), local_actor())
    assert (
        container.runs.list(kind="pipeline") == []
    )  # a literal of the wrong type: refused up front
    unknown_kind = write_spec(tmp_path, SPEC.replace("uses: count", "uses: nope"))
    with pytest.raises(Exception, match="no pipeline step named 'nope'"):
        container.pipelines.run(load_pipeline(unknown_kind), local_actor())


def test_shipped_example_pipeline_is_valid() -> None:
    from llmloop.core.pipelines import order_steps

    root = Path(__file__).resolve().parents[3]
    spec = load_pipeline(root / "examples" / "support" / "pipeline.yaml")
    registry = build_registry()
    for step in order_steps(spec):
        kind = registry.resolve("pipeline_steps", step.uses)
        assert hasattr(kind, "Inputs") and hasattr(kind, "run"), step.uses
    assert [s.id for s in order_steps(spec)][:3] == ["ingest", "clean", "split"]
    import yaml

    workflow = yaml.safe_load((root / "examples" / "ci" / "eval-gate.yml").read_text())
    assert "gate" in workflow["jobs"]
