"""Pipeline files as teams write them: every built-in step kind can be named in ``uses``, and
each mistake (a kind, a field, a type, a reference, a parameter) is refused before anything runs,
in a message that names the step and the field."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmloop.config import load_settings
from llmloop.core.models import ModelVersionCreate
from llmloop.errors import ConfigError
from llmloop.plugins import build_registry
from llmloop.services import pipeline_steps
from llmloop.services.actors import local_actor
from llmloop.services.container import Container
from llmloop.services.pipelines import load_pipeline


@pytest.fixture
def container(tmp_path: Path) -> Iterator[Container]:
    c = Container(load_settings({"home": str(tmp_path / "home")}, env={}), plugins=build_registry())
    yield c
    c.close()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    return path


def test_every_built_in_step_kind_is_registered() -> None:
    registry = build_registry()
    names = set(registry.names("pipeline_steps"))
    defined = {
        cls
        for name, cls in vars(pipeline_steps).items()
        if inspect.isclass(cls)
        and name.endswith("Step")
        and cls.__module__ == pipeline_steps.__name__
    }
    registered = {registry.resolve("pipeline_steps", name) for name in names}
    assert defined <= registered, sorted(c.__name__ for c in defined - registered)
    assert {"register", "hpo", "watch"} <= names


def test_register_step_stores_a_weights_folder(container: Container, tmp_path: Path) -> None:
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "config.json").write_text("{}")
    spec = load_pipeline(
        write(
            tmp_path,
            f"name: reg\nsteps:\n  - id: reg\n    uses: register\n"
            f"    with: {{model: bot, path: '{weights}', base_model: tiny}}\n",
        )
    )
    report = container.pipelines.run(spec, local_actor())
    assert report.status == "finished", report.steps[0].error
    version = container.models.get_version("bot", 1)
    assert version.artifact is not None and container.artifacts.exists(version.artifact)
    assert version.run_id == report.steps[0].run_id


def test_a_cached_promote_moves_back_an_alias_moved_by_hand(
    container: Container, tmp_path: Path
) -> None:
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "config.json").write_text("{}")
    spec = load_pipeline(write(tmp_path, (
        f"name: ship\nsteps:\n  - id: reg\n    uses: register\n"
        f"    with: {{model: bot, path: '{weights}', base_model: tiny}}\n"
        "  - id: promote\n    uses: promote\n"
        "    with: {model: bot, version: '${{ steps.reg.outputs.version }}'}\n")))  # fmt: skip
    me = local_actor()
    assert container.pipelines.run(spec, me).status == "finished"
    other = ModelVersionCreate(base_model="tiny")
    container.models.create_version("bot", other, me)
    container.models.set_alias("bot", "champion", 2, me)  # a rollback by hand
    again = container.pipelines.run(spec, me)
    assert [s.status for s in again.steps] == ["cached", "cached"]
    assert container.models.get_version("bot", "champion").version == 1  # what the run stands for
    moves = [e for e in container.governance.audit() if "alias" in e.action]
    assert len(moves) == 3  # promoted, moved by hand, moved back: each audited
    assert container.pipelines.run(spec, me).steps[1].status == "cached"
    assert len([e for e in container.governance.audit() if "alias" in e.action]) == 3


STEP = "name: p\nsteps:\n  - id: first\n    uses: register\n    with: {model: m}\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "a mapping with 'name' and 'steps', not an empty file"),
        ("- a\n- b\n", "not a list"),
        (STEP + "  - id: second\n    uses: nosuch\n", "step 'second': no pipeline step named"),
        (
            STEP + "  - id: second\n    uses: split\n    retries: many\n",
            "step 'second' (split): retries",
        ),
        (STEP + "  - uses: split\n    with: {dataset: d}\n", "step 2 (split): id: Field required"),
        (STEP + "  - id: second\n    uses: split\n    with: [1]\n", "step 'second' (split): with"),
        (STEP + "  - id: second\n    uses: split\n    wiht: {}\n", "step 'second' (split): wiht"),
        (
            STEP + "  - id: second\n    uses: split\n    with: {datset: d}\n",
            "unknown input(s) datset",
        ),
        (
            STEP + "  - id: second\n    uses: split\n",
            "step 'second' (split): dataset: Field required",
        ),
        (
            STEP + "  - id: second\n    uses: split\n    with: {dataset: d, config: 5}\n",
            "step 'second' (split): config: Input should be a valid dictionary",
        ),
        (
            STEP + "  - id: second\n    uses: split\n    with: {dataset: '${{ params.nope }}'}\n",
            "step 'second' (split): uses parameter nope",
        ),
        (
            STEP
            + "  - id: second\n    uses: split\n    with: {dataset: '${{ steps.zz.outputs.x }}'}\n",
            "step 'second' refers to unknown steps: zz",
        ),
        (
            STEP + "  - id: second\n    uses: split\n    needs: [second]\n    with: {dataset: d}\n",
            "cycle among: second",
        ),
        (
            STEP + "  - id: first\n    uses: split\n    with: {dataset: d}\n",
            "duplicate step id 'first'",
        ),
    ],
)
def test_mistakes_name_the_step_and_field_before_anything_runs(
    container: Container, tmp_path: Path, text: str, expected: str
) -> None:
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        container.pipelines.run(load_pipeline(write(tmp_path, text)), local_actor())
    assert container.runs.list(kind="pipeline") == []  # refused up front: nothing recorded
    assert container.models.count() == 0  # the first step did not run


def test_a_reference_to_a_missing_output_names_both_steps(
    container: Container, tmp_path: Path
) -> None:
    ref = "'${{ steps.first.outputs.nope }}'"
    text = STEP + f"  - id: second\n    uses: split\n    with: {{dataset: {ref}}}\n"
    expected = r"step 'second' \(split\): step 'first' has no output 'nope' \(it has: model_version"
    with pytest.raises(ConfigError, match=expected):
        container.pipelines.run(load_pipeline(write(tmp_path, text)), local_actor())
    assert [r.status for r in container.runs.list(kind="pipeline")] == ["failed"]


def test_validate_checks_parameters_too(container: Container, tmp_path: Path) -> None:
    text = (
        "name: p\nsteps:\n  - id: s\n    uses: split\n    with: {dataset: '${{ params.data }}'}\n"
    )
    spec = load_pipeline(write(tmp_path, text))
    with pytest.raises(ConfigError, match="uses parameter data"):
        container.pipelines.check(spec)
    assert [s.id for s in container.pipelines.check(spec, {"data": "d"})] == ["s"]


def test_a_folder_is_not_a_pipeline_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a folder"):
        load_pipeline(tmp_path)


ALIAS_SPEC = """
name: judge
steps:
  - id: ingest
    uses: ingest
    with: {source: rows.jsonl, dataset: tickets}
  - id: eval
    uses: eval
    with: {suite: suite.yaml, model: bot, ref: champion, dataset: tickets,
           version: "${{ steps.ingest.outputs.version }}"}
  - id: gate
    uses: gate
    with: {candidate: "${{ steps.eval.outputs.eval_run }}", rules: ["token_f1 >= 0"]}
"""


def test_moving_an_alias_reruns_exactly_the_steps_after_it(
    container: Container, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmloop.core.models import ModelVersionCreate

    monkeypatch.chdir(tmp_path)
    (tmp_path / "rows.jsonl").write_text('{"prompt": "hi", "response": "hi"}\n')
    (tmp_path / "suite.yaml").write_text(
        "name: q\nfields: {input: prompt, reference: response}\nevaluators:\n  - name: token_f1\n"
    )
    actor = local_actor()
    for _ in range(2):
        container.models.create_version(
            "bot", ModelVersionCreate(base_model="tiny", format="echo"), actor
        )
    container.models.set_alias("bot", "champion", 1, actor)
    spec = load_pipeline(write(tmp_path, ALIAS_SPEC))
    first = container.pipelines.run(spec, actor)
    assert [s.status for s in first.steps] == ["ran", "ran", "ran"], first.steps
    again = container.pipelines.run(spec, actor)
    assert [s.status for s in again.steps] == ["cached", "cached", "cached"]
    container.models.set_alias("bot", "champion", 2, actor)
    moved = container.pipelines.run(spec, actor)
    assert [s.status for s in moved.steps] == ["cached", "ran", "ran"]
