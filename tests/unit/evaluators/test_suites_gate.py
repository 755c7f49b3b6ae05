"""Declarative suites run end to end with the echo engine, and regression gates on their reports."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from llmloop.core.chat import EngineSpec, GenerationRequest, GenerationResult
from llmloop.core.evals import EvalResult, SampleScore
from llmloop.engines.echo import EchoEngine
from llmloop.errors import ConfigError, InvalidInputError, NotFoundError, UpstreamError
from llmloop.evaluators.base import Evaluator
from llmloop.evaluators.gate import GateRule, evaluate_gate
from llmloop.evaluators.judges import PointwiseJudge
from llmloop.evaluators.matching import ExactMatchEvaluator, TokenF1Evaluator
from llmloop.evaluators.metrics import BleuEvaluator, RougeEvaluator
from llmloop.evaluators.suites import Suite, SuiteReport, load_suite, run_suite
from llmloop.evaluators.usage import UsageEvaluator

REGISTRY: dict[str, type[Evaluator]] = {
    "bleu": BleuEvaluator,
    "rouge": RougeEvaluator,
    "exact_match": ExactMatchEvaluator,
    "token_f1": TokenF1Evaluator,
    "usage": UsageEvaluator,
    "judge": PointwiseJudge,
}

SUITE_YAML = """
name: qa-smoke
description: Echo answers should match references.
fields: {id: qid, input: question, reference: answer, metadata: [topic]}
prompt_template: "{{ question }}"
system_prompt: Answer briefly.
concurrency: 2
prompt_price_per_million: 1000
evaluators:
  - {name: exact_match}
  - {name: rouge, config: {rouge_types: [rougeL]}}
  - {name: bleu}
  - {name: usage}
  - name: judge
    alias: helpfulness
    config: {k: 2, template: "Rate {{ output }}", threshold: 3}
"""

ROWS = [
    {
        "qid": "q1",
        "question": "Paris is the capital",
        "answer": "Paris is the capital",
        "topic": "geo",
    },
    {"qid": "q2", "question": "the cat sat", "answer": "a cat sat on the mat", "topic": "pets"},
    {"qid": "q3", "question": "blue", "answer": "red", "topic": "colors"},
]


def echo() -> EchoEngine:
    return EchoEngine(EngineSpec(kind="echo", model="echo-1"))


async def test_suite_from_yaml_generates_records_usage_and_evaluates(tmp_path: Path) -> None:
    path = tmp_path / "suite.yaml"
    path.write_text(SUITE_YAML)
    suite = load_suite(path)
    judge = EchoEngine(EngineSpec(kind="echo", model="judge", options={"reply": "Score: 4"}))
    report = await run_suite(suite, echo(), ROWS, REGISTRY, judge_engine=judge)
    assert report.suite == "qa-smoke" and report.model == "echo-1"
    assert report.evaluator_errors == {}
    assert [o.id for o in report.outputs] == ["q1", "q2", "q3"]
    assert [o.output for o in report.outputs] == ["Paris is the capital", "the cat sat", "blue"]
    assert all(o.latency_s >= 0 and o.completion_tokens > 0 for o in report.outputs)
    assert report.outputs[0].cost_usd == pytest.approx(report.outputs[0].prompt_tokens * 1e-3)
    metrics = report.metrics()
    assert metrics["exact_match"] == pytest.approx(1 / 3)
    assert metrics["exact_match.exact_match"] == metrics["exact_match"]
    assert 0 < metrics["rougeL"] < 1
    assert metrics["helpfulness.judge_score"] == 4.0
    assert metrics["usage.prompt_tokens_total"] > 0
    assert set(report.evaluator_seconds) == {"exact_match", "rouge", "bleu", "usage", "helpfulness"}
    assert report.sample_scores("rougeL")["q1"] == 1.0
    # The report survives a JSON round trip (the service persists it).
    assert SuiteReport.model_validate_json(report.model_dump_json()) == report


async def test_generation_is_bounded_and_failures_are_recorded() -> None:
    state = {"now": 0, "peak": 0}

    class Tracked(EchoEngine):
        async def chat(self, req: GenerationRequest) -> GenerationResult:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
            await asyncio.sleep(0.01)
            state["now"] -= 1
            if req.messages and "boom" in req.messages[-1].content:
                raise UpstreamError("model crashed")
            return await super().chat(req)

    suite = Suite(
        name="s", concurrency=2, prompt_template="Q: {{ input }}", evaluators=[{"name": "token_f1"}]
    )  # type: ignore[list-item]
    rows = [{"input": f"x{i}", "reference": f"Q: x{i}"} for i in range(6)] + [
        {"input": "boom", "reference": "r"}
    ]
    report = await run_suite(suite, Tracked(EngineSpec(kind="echo")), rows, REGISTRY)
    assert state["peak"] == 2
    assert report.n_failed == 1
    assert report.outputs[-1].error == "UpstreamError: model crashed"
    assert report.results["token_f1"].aggregate["token_f1"] == 1.0
    assert len(report.results["token_f1"].samples) == 6


async def test_suite_errors_are_clear() -> None:
    with pytest.raises(ConfigError, match="invalid suite"):
        load_suite("name: x\nconcurrency: 0\n")
    with pytest.raises(ConfigError, match="YAML mapping"):
        load_suite("- just a list\n")
    with pytest.raises(NotFoundError, match="cannot read"):
        load_suite("missing-suite.yaml")
    unknown = Suite(name="s", evaluators=[{"name": "nope"}])  # type: ignore[list-item]
    with pytest.raises(NotFoundError, match="no evaluator named 'nope'"):
        await run_suite(unknown, echo(), ROWS, REGISTRY)
    bad_cfg = Suite(name="s", evaluators=[{"name": "rouge", "config": {"rouge_types": ["x"]}}])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="invalid config for evaluator 'rouge'"):
        await run_suite(bad_cfg, echo(), ROWS, REGISTRY)
    with pytest.raises(InvalidInputError, match="row 0 has no 'input'"):
        await run_suite(Suite(name="s"), echo(), [{"question": "x"}], REGISTRY)
    with pytest.raises(InvalidInputError, match="no rows"):
        await run_suite(Suite(name="s"), echo(), [], REGISTRY)
    dup = Suite(name="s", evaluators=[{"name": "bleu"}, {"name": "bleu"}])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="unique"):
        await run_suite(dup, echo(), ROWS, lambda name: REGISTRY[name])
    # An evaluator that cannot score is recorded, not fatal: here no reference exists.
    report = await run_suite(
        Suite(name="s", evaluators=[{"name": "bleu"}]),  # type: ignore[list-item]
        echo(),
        [{"input": "x"}],
        REGISTRY,
    )
    assert "reference" in report.evaluator_errors["bleu"]


def _report(
    name: str, scores: list[float], extra: dict[str, float] | None = None
) -> dict[str, EvalResult]:
    samples = [SampleScore(sample_id=str(i), scores={name: s}) for i, s in enumerate(scores)]
    aggregate = {name: sum(scores) / len(scores), **(extra or {})}
    return {"rouge": EvalResult(evaluator="rouge", aggregate=aggregate, samples=samples)}


BASE = [0.4 + 0.01 * (i % 20) for i in range(50)]


def test_rule_parsing_round_trips() -> None:
    rule = GateRule.parse("rougeL >= baseline - 0.01 (paired_bootstrap, 0.9)")
    assert (rule.metric, rule.op, rule.baseline_offset, rule.test, rule.confidence) == (
        "rougeL",
        ">=",
        -0.01,
        "paired_bootstrap",
        0.9,
    )
    assert GateRule.parse(rule.describe()) == rule
    assert GateRule.parse("bleu >= 20").value == 20
    assert GateRule.parse("toxicity_rate<=0.01").op == "<="
    assert GateRule.parse("judge.judge_score > baseline").baseline_offset == 0.0
    for bad in ("rougeL", "bleu => 20", "bleu >= twenty", "bleu >= 20 (paired_bootstrap)"):
        with pytest.raises(ConfigError):
            GateRule.parse(bad)


def test_gate_fails_worse_candidate_and_passes_equal_or_better() -> None:
    rules = ["rougeL >= baseline - 0.01 (paired_bootstrap)", "rougeL >= 0.3"]
    baseline = _report("rougeL", BASE)
    worse = _report("rougeL", [b - 0.08 for b in BASE])
    result = evaluate_gate(rules, worse, baseline)
    assert not result.passed
    failed = result.failures[0]
    assert failed.test is not None and failed.test.high < -0.01
    assert "CI" in failed.reason
    assert evaluate_gate(rules, baseline, baseline).passed
    better = _report("rougeL", [b + 0.05 for b in BASE])
    assert evaluate_gate(rules, better, baseline).passed


def test_paired_test_forgives_noise_that_plain_comparison_does_not() -> None:
    noisy = [b + (0.1 if i % 2 else -0.1) - 0.004 for i, b in enumerate(BASE)]
    plain = evaluate_gate(["rougeL >= baseline"], _report("rougeL", noisy), _report("rougeL", BASE))
    tested = evaluate_gate(
        ["rougeL >= baseline (paired_bootstrap)"], _report("rougeL", noisy), _report("rougeL", BASE)
    )
    assert not plain.passed
    assert tested.passed


def test_lower_is_better_rules_and_absolute_thresholds() -> None:
    cand = _report("rougeL", BASE, {"toxicity_rate": 0.02})
    base = _report("rougeL", BASE, {"toxicity_rate": 0.0})
    result = evaluate_gate(
        ["toxicity_rate <= 0.01", "toxicity_rate <= baseline + 0.05"], cand, base
    )
    assert [r.status for r in result.rules] == ["failed", "passed"]
    assert result.rules[0].candidate == 0.02 and result.rules[0].threshold == 0.01


def test_missing_metrics_and_baselines() -> None:
    cand = _report("rougeL", BASE)
    result = evaluate_gate(["bleu >= 20"], cand)
    assert not result.passed and "rouge.rougeL" in result.rules[0].reason
    first_run = evaluate_gate(["rougeL >= baseline"], cand)
    assert first_run.passed and first_run.rules[0].status == "skipped"
    strict = evaluate_gate(["rougeL >= baseline"], cand, missing_baseline="fail")
    assert not strict.passed
    other = {"bleu": EvalResult(evaluator="bleu", aggregate={"bleu": 30.0})}
    assert "baseline report" in evaluate_gate(["rougeL >= baseline"], cand, other).rules[0].reason
    with pytest.raises(InvalidInputError, match="at least one rule"):
        evaluate_gate([], cand)
    results = list(cand.values())
    assert evaluate_gate(["rouge.rougeL >= 0.4"], results).passed
    with pytest.raises(InvalidInputError, match="two results named"):
        evaluate_gate(["rougeL >= 0"], results + results)


async def test_gate_on_suite_reports() -> None:
    suite = load_suite(SUITE_YAML)
    judge = EchoEngine(EngineSpec(kind="echo", options={"reply": "Score: 4"}))
    base = await run_suite(suite, echo(), ROWS, REGISTRY, judge_engine=judge)
    prefixed = EchoEngine(EngineSpec(kind="echo", model="worse", options={"prefix": "um, "}))
    cand = await run_suite(suite, prefixed, ROWS, REGISTRY, judge_engine=judge)
    rules = ["exact_match >= baseline", "rougeL >= baseline - 0.01", "helpfulness.judge_score >= 3"]
    assert evaluate_gate(rules, base, base).passed
    result = evaluate_gate(rules, cand, base)
    assert [r.status for r in result.rules] == ["failed", "failed", "passed"]
