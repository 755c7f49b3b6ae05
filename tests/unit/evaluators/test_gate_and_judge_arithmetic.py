"""Arithmetic a practitioner relies on: gate boundaries under float rounding, paired tests only on
metrics that are item means, judge intervals that stay on their scale, red-team rates over the
probes actually answered, and stored reports whose NaN scores still read back."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pytest
from scipy import stats

from llmloop.core.chat import (
    EngineCapabilities,
    EngineSpec,
    GenerationRequest,
    GenerationResult,
)
from llmloop.core.evals import EvalResult, EvalSample, SampleScore
from llmloop.engines.echo import EchoEngine
from llmloop.errors import UpstreamError
from llmloop.evaluators.gate import evaluate_gate
from llmloop.evaluators.judges import PointwiseJudge, PointwiseJudgeConfig
from llmloop.evaluators.metrics import BleuEvaluator
from llmloop.evaluators.preference import PairwiseJudge, PairwiseJudgeConfig
from llmloop.evaluators.redteam import run_redteam
from llmloop.evaluators.suites import SuiteReport


def _agg(**values: float) -> dict[str, EvalResult]:
    return {"m": EvalResult(evaluator="m", aggregate=values)}


@pytest.mark.parametrize(
    ("rule", "candidate", "baseline", "status"),
    [
        # 0.2 + 0.1 is 0.30000000000000004 in floats: equality at the boundary still meets >=.
        ("x >= baseline + 0.1", 0.3, 0.2, "passed"),
        ("x > baseline + 0.1", 0.3, 0.2, "failed"),
        ("x <= baseline - 0.1", 0.6, 0.7, "passed"),
        ("x < baseline - 0.1", 0.6, 0.7, "failed"),
        ("x == baseline", 0.1 + 0.2, 0.3, "passed"),
        ("x >= baseline - 0.01", 0.49, 0.5, "passed"),
        ("x >= baseline - 0.01", 0.4899, 0.5, "failed"),
    ],
)
def test_baseline_arithmetic_at_the_boundary(
    rule: str, candidate: float, baseline: float, status: str
) -> None:
    result = evaluate_gate([rule], _agg(x=candidate), _agg(x=baseline))
    assert result.rules[0].status == status, result.rules[0]


def test_non_finite_metrics_fail_with_a_reason() -> None:
    result = evaluate_gate(["x <= 0.01"], _agg(x=float("nan")))
    assert result.rules[0].status == "failed" and "nan" in result.rules[0].reason
    base = evaluate_gate(["x >= baseline"], _agg(x=1.0), _agg(x=float("inf")))
    assert base.rules[0].status == "failed" and "inf" in base.rules[0].reason


async def test_paired_test_is_not_run_on_corpus_bleu() -> None:
    """Corpus BLEU is not the mean of sentence BLEU: a bootstrap over sentence scores would test
    another statistic, so the rule compares the corpus scores themselves."""
    refs = ["the cat sat on the mat", "a dog ran in the park", "it is raining today"]
    good = ["the cat sat on the mat", "a dog ran in the park", "it is raining"]
    bad = ["the cat sat", "a dog", "it is"]

    def samples(outputs: list[str]) -> list[EvalSample]:
        return [
            EvalSample(id=str(i), output=o, reference=r)
            for i, (o, r) in enumerate(zip(outputs, refs, strict=True))
        ]

    make, base = samples(bad), samples(good)
    cand_result = {"bleu": await BleuEvaluator().evaluate(make)}
    base_result = {"bleu": await BleuEvaluator().evaluate(base)}
    rule = "bleu >= baseline - 1 (paired_bootstrap)"
    outcome = evaluate_gate([rule], cand_result, base_result).rules[0]
    assert outcome.test is None and "compared aggregates" in outcome.reason
    assert outcome.status == "failed"  # corpus BLEU dropped far more than 1 point
    # A metric that is a mean of its items keeps the test.
    mean = {
        "em": EvalResult(
            evaluator="em",
            aggregate={"em": 0.5},
            samples=[SampleScore(sample_id=str(i), scores={"em": v}) for i, v in enumerate([1, 0])],
        )
    }
    kept = evaluate_gate(["em >= baseline (paired_bootstrap)"], mean, mean).rules[0]
    assert kept.test is not None and kept.status == "passed"


class Votes(EchoEngine):
    """A judge whose k-th vote (seed k) is given in advance."""

    def __init__(self, replies: list[str]) -> None:
        super().__init__(EngineSpec(kind="echo", model="judge"))
        self.replies = replies

    @property
    def capabilities(self) -> EngineCapabilities:
        return EngineCapabilities()

    async def chat(self, req: GenerationRequest) -> GenerationResult:
        return GenerationResult(text=self.replies[(req.sampling.seed or 0) % len(self.replies)])


async def test_judge_interval_is_students_t_kept_on_the_scale() -> None:
    votes = ["Score: 4", "Score: 4", "Score: 5", "Score: 3", "Score: 4"]
    judge = PointwiseJudge(PointwiseJudgeConfig(k=5, template="{{ output }}"), Votes(votes))
    item = (await judge.evaluate([EvalSample(id="a", output="x")])).samples[0]
    v = np.array([4, 4, 5, 3, 4.0])
    low, high = stats.t.interval(0.95, df=4, loc=v.mean(), scale=stats.sem(v))
    assert item.scores["judge_variance"] == pytest.approx(v.var(ddof=1))
    assert item.details["ci"] == pytest.approx([low, high])
    # Two votes 1 and 5: the t-interval is mean 3 +- 25; a mean of 1..5 scores stays in 1..5.
    wide = PointwiseJudge(PointwiseJudgeConfig(k=2, template="{{ output }}"), Votes(["1", "5"]))
    result = await wide.evaluate([EvalSample(id="a", output="x"), EvalSample(id="b", output="y")])
    assert result.samples[0].details["ci"] == [1.0, 5.0]
    assert result.samples[0].details["flagged"]


async def test_human_kappa_rounds_halves_up() -> None:
    # The echo judge repeats each output, so the judge's means are 2.5, 3.5, 1 and 5; rounded
    # halves up they are the humans' 3, 4, 1, 5 (Python's round() sends 2.5 down to 2).
    judge = PointwiseJudge(
        PointwiseJudgeConfig(k=1, template="{{ output }}"),
        EchoEngine(EngineSpec(kind="echo", model="judge")),
    )
    samples = [
        EvalSample(id=str(i), output=out, metadata={"human_label": human})
        for i, (out, human) in enumerate([("2.5", 3), ("3.5", 4), ("1", 1), ("5", 5)])
    ]
    result = await judge.evaluate(samples)
    assert [s.scores["judge_score"] for s in result.samples] == [2.5, 3.5, 1.0, 5.0]
    assert result.aggregate["human_n"] == 4.0
    assert result.aggregate["human_kappa"] == pytest.approx(1.0)


async def test_pairwise_interval_stays_within_zero_and_one() -> None:
    def longer(req: GenerationRequest) -> str:
        text = req.messages[-1].content if req.messages else ""
        a = text.split("[ANSWER A]\n")[1].split("\n\n[ANSWER B]")[0]
        b = text.split("[ANSWER B]\n")[1].split("\n\nExplain")[0]
        return "[[A]]" if len(a) > len(b) else "[[B]]"

    class Longer(Votes):
        async def chat(self, req: GenerationRequest) -> GenerationResult:
            return GenerationResult(text=longer(req))

    judge = PairwiseJudge(PairwiseJudgeConfig(k=3), Longer([]))
    samples = [
        EvalSample(id="1", input="q", output="a long answer", metadata={"baseline_output": "s"}),
        EvalSample(id="2", input="q", output="s", metadata={"baseline_output": "a long one"}),
    ]
    result = await judge.evaluate(samples)
    # Consistent in both orders: one clear win and one clear loss, preference 0.5.
    assert [s.scores["preference"] for s in result.samples] == [1.0, 0.0]
    assert result.aggregate["inconsistency_rate"] == 0.0
    assert result.aggregate["preference_ci_low"] == 0.0  # the t-interval alone reaches -5.85
    assert result.aggregate["preference_ci_high"] == 1.0


class HalfDown(EchoEngine):
    """Answers with the prompt, except that every prompt-injection probe times out."""

    async def chat(self, req: GenerationRequest) -> GenerationResult:
        assert req.messages is not None
        if "PWNED" in req.messages[-1].content or "ACCESS-GRANTED" in req.messages[-1].content:
            raise UpstreamError("timed out", retryable=True)
        return await super().chat(req)


async def test_red_team_rates_leave_unanswered_probes_out() -> None:
    report = await run_redteam(HalfDown(EngineSpec(kind="echo", model="m")))
    errored = [r for r in report.results if r.error]
    answered = [r for r in report.results if not r.error]
    assert errored and report.errors == len(errored)
    assert report.attack_success_rate == pytest.approx(
        sum(r.compromised for r in answered) / len(answered)
    )
    llm01 = report.by_owasp["LLM01"]
    group = [r for r in report.results if r.owasp == "LLM01"]
    assert llm01.errors == sum(1 for r in group if r.error)
    assert llm01.attack_success_rate == pytest.approx(
        sum(r.compromised for r in group) / (len(group) - llm01.errors)
    )
    as_result = report.to_eval_result()
    per_item = [s.scores["compromised"] for s in as_result.samples if s.scores]
    assert sum(per_item) / len(per_item) == pytest.approx(report.attack_success_rate)


async def test_red_team_with_no_answer_is_an_error_not_a_clean_bill() -> None:
    down = EchoEngine(EngineSpec(kind="echo", model="m", options={"fail_rate": 1.0}))
    with pytest.raises(UpstreamError, match="answered no red-team probe"):
        await run_redteam(down)


def test_stored_report_with_nan_scores_reads_back_and_gates() -> None:
    from llmloop.services.evaluation import load_report

    report = SuiteReport(
        suite="s",
        model="m",
        started_at=datetime.now(UTC),
        duration_s=1.0,
        generation_s=1.0,
        outputs=[],
        results={
            "p": EvalResult(
                evaluator="p",
                aggregate={"perplexity": float("inf"), "ok": 1.0},
                samples=[SampleScore(sample_id="a", scores={"perplexity": float("nan")})],
            )
        },
    )
    raw = report.model_dump_json().encode()
    assert json.loads(raw)["results"]["p"]["aggregate"]["perplexity"] is None
    back = load_report(raw)
    assert np.isnan(back.results["p"].aggregate["perplexity"])
    assert back.results["p"].aggregate["ok"] == 1.0
    gate = evaluate_gate(["perplexity <= 20", "ok >= 1"], back)
    assert [r.status for r in gate.rules] == ["failed", "passed"]
