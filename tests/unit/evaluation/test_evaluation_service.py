"""Evaluation end to end through the services: a suite on registry model versions over a dataset
version is recorded as an eval run with lineage; the gate fails a worse candidate and passes an
equal one; the CLI exits non-zero on a failed gate."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmloop.cli.main import app as cli
from llmloop.config import load_settings
from llmloop.core.datasets import DatasetVersionCreate
from llmloop.core.models import ModelVersionCreate
from llmloop.errors import ConfigError
from llmloop.services.actors import local_actor
from llmloop.services.container import Container

ROWS = [
    {"id": "1", "input": "Where is my order?", "reference": "Your order ships today."},
    {"id": "2", "input": "How do I reset my password?", "reference": "Open settings and reset."},
    {"id": "3", "input": "Can I return shoes?", "reference": "Yes, within thirty days."},
]
SUITE = """
name: support-quality
prompt_template: "{{ input }}"
evaluators:
  - name: rouge
  - name: exact_match
"""


@pytest.fixture
def container(tmp_path: Path) -> Iterator[Container]:
    c = Container(load_settings({"home": str(tmp_path)}, env={}))
    me = local_actor()
    c.datasets.create_version("eval-set", DatasetVersionCreate(rows=ROWS), me)
    # "good" echoes the reference (planted in its reply table); "bad" always says the same.
    replies = {r["input"]: r["reference"] for r in ROWS}
    good = ModelVersionCreate(format="echo", params={"replies": replies})
    c.models.create_version("bot", good, me)
    c.models.create_version(
        "bot", ModelVersionCreate(format="echo", params={"reply": "No idea."}), me
    )
    c.models.create_version("bot", good, me)
    yield c
    c.close()


def test_eval_run_is_recorded_with_lineage(container: Container, tmp_path: Path) -> None:
    suite = tmp_path / "suite.yaml"
    suite.write_text(SUITE)
    out = container.evaluation.evaluate(suite, "bot", "eval-set", local_actor(), ref=1)
    assert out.metrics["rougeL"] == pytest.approx(1.0) and out.metrics["exact_match"] == 1.0
    run = container.runs.get(out.run_id)
    assert run.kind == "eval" and run.status == "finished"
    assert run.latest_metrics["rougeL"] == pytest.approx(1.0)
    graph = container.governance.lineage(out.run_id, "up")
    assert {n.type for n in graph.nodes} >= {"dataset_version", "model_version"}
    assert len(container.evaluation.report(out.run_id).outputs) == 3


def test_gate_fails_worse_and_passes_equal(container: Container, tmp_path: Path) -> None:
    suite = tmp_path / "suite.yaml"
    suite.write_text(SUITE)
    me = local_actor()
    base = container.evaluation.evaluate(suite, "bot", "eval-set", me, ref=1)
    worse = container.evaluation.evaluate(suite, "bot", "eval-set", me, ref=2)
    equal = container.evaluation.evaluate(suite, "bot", "eval-set", me, ref=3)
    rules = ["rougeL >= baseline - 0.01"]
    assert not container.evaluation.gate(rules, worse.run_id, base.run_id, me).passed
    assert container.evaluation.gate(rules, equal.run_id, base.run_id, me).passed
    with pytest.raises(ConfigError):
        container.evaluation.gate([], equal.run_id, base.run_id, me)
    gate_run = container.runs.list(kind="eval")[0]
    with pytest.raises(Exception, match="no stored report"):
        container.evaluation.report(gate_run.id)
    runner = CliRunner()
    home = ["--home", str(container.settings.home)]
    failed = runner.invoke(
        cli,
        [
            *home,
            "eval",
            "gate",
            "--candidate",
            worse.run_id,
            "--baseline",
            base.run_id,
            "--rule",
            rules[0],
        ],
    )
    assert failed.exit_code == 11, failed.output
    passed = runner.invoke(
        cli,
        [
            *home,
            "eval",
            "gate",
            "--candidate",
            equal.run_id,
            "--baseline",
            base.run_id,
            "--rule",
            rules[0],
        ],
    )
    assert passed.exit_code == 0, passed.output
    # No --baseline: the relative rule is skipped and said so, or fails when asked to.
    alone = [*home, "eval", "gate", "--candidate", equal.run_id, "--rule", rules[0]]
    skipped = runner.invoke(cli, alone)
    assert skipped.exit_code == 0, skipped.output
    assert "SKIP" in skipped.output and "no --baseline was given" in skipped.output
    strict = runner.invoke(cli, [*alone, "--missing-baseline", "fail"])
    assert strict.exit_code == 11, strict.output
    typo = runner.invoke(cli, [*alone, "--missing-baseline", "never"])
    assert typo.exit_code == 2 and "must be skip or fail" in typo.output


def test_bad_inputs(container: Container, tmp_path: Path) -> None:
    suite = tmp_path / "suite.yaml"
    suite.write_text(SUITE)
    me = local_actor()
    from llmloop.errors import NotFoundError

    with pytest.raises(NotFoundError):
        container.evaluation.evaluate(suite, "nope", "eval-set", me)
    with pytest.raises(NotFoundError):
        container.evaluation.evaluate(suite, "bot", "nope", me, ref=1)
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\nevaluators: [{name: no_such_metric}]\n")
    with pytest.raises(NotFoundError, match="no_such_metric"):
        container.evaluation.evaluate(broken, "bot", "eval-set", me, ref=1)


def test_redteam_groups_by_owasp(container: Container) -> None:
    me = local_actor()
    container.models.create_version(
        "safe", ModelVersionCreate(format="echo", params={"reply": "I can't help with that."}), me
    )
    report = container.evaluation.redteam("safe", me, ref=1)
    assert report["by_owasp"] and all(
        k.startswith("LLM") or k == "none" for k in report["by_owasp"]
    )
    run = container.runs.get(report["run_id"])
    assert "attack_success_rate" in run.latest_metrics


def test_judge_template_from_the_prompt_registry(container: Container, tmp_path: Path) -> None:
    from llmloop.core.prompts import PromptVersionCreate

    me = local_actor()
    template = "Rate the answer from 1 to 5.\nQuestion: {{ input }}\nAnswer: {{ output }}\nScore:"
    pv = container.prompts.create_version(
        "judge-quality", PromptVersionCreate(template=template), me
    )
    container.prompts.set_label("judge-quality", "production", pv.version, me)
    container.models.create_version(
        "judge", ModelVersionCreate(format="echo", params={"reply": "5"}), me
    )
    suite = tmp_path / "judged.yaml"
    suite.write_text(
        "name: judged\nevaluators:\n  - name: judge\n    config:\n"
        "      template_prompt: judge-quality@production\n      threshold: 3\n"
    )
    out = container.evaluation.evaluate(suite, "bot", "eval-set", me, ref=1, judge=("judge", 1))
    assert any(v == 5.0 for k, v in out.metrics.items() if "score" in k or k.endswith("mean")), (
        out.metrics
    )
    inputs = {i.id: i.role for i in container.runs.get(out.run_id).inputs}
    assert inputs.get(pv.id) == "judge_template"
