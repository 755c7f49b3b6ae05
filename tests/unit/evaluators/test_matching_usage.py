"""Exact match, SQuAD token F1 and the latency/tokens/cost evaluator."""

from __future__ import annotations

import pytest

from llmloop.core.evals import EvalSample
from llmloop.errors import InvalidInputError
from llmloop.evaluators.matching import (
    ExactMatchConfig,
    ExactMatchEvaluator,
    NormalizeConfig,
    TokenF1Evaluator,
    normalize_text,
    token_f1,
)
from llmloop.evaluators.usage import UsageConfig, UsageEvaluator


def test_normalize_follows_squad_steps() -> None:
    assert normalize_text("  The  Cat, sat! ", NormalizeConfig()) == "cat sat"
    raw = NormalizeConfig(lowercase=False, strip_punctuation=False, remove_articles=False)
    assert normalize_text("The  Cat,", raw) == "The Cat,"
    assert normalize_text("«Paris»", NormalizeConfig()) == "paris"


def test_token_f1_squad_examples() -> None:
    cfg = NormalizeConfig()
    assert token_f1("the cat sat", "a cat sat on the mat", cfg) == pytest.approx(2 / 3)
    assert token_f1("Paris", "paris.", cfg) == 1.0
    assert token_f1("London", "Paris", cfg) == 0.0
    assert token_f1("", "", cfg) == 1.0
    assert token_f1("the", "Paris", cfg) == 0.0  # empty after normalisation
    assert token_f1("a a b", "a b b", cfg) == pytest.approx(2 / 3)


async def test_exact_match_with_and_without_normalisation() -> None:
    samples = [
        EvalSample(id="1", output="The Eiffel Tower.", reference="eiffel tower"),
        EvalSample(id="2", output="Berlin", references=["Paris", "berlin"]),
        EvalSample(id="3", output="Rome", reference="Madrid"),
    ]
    result = await ExactMatchEvaluator().evaluate(samples)
    assert [s.scores["exact_match"] for s in result.samples] == [1.0, 1.0, 0.0]
    assert result.aggregate["exact_match"] == pytest.approx(2 / 3)
    strict = ExactMatchConfig(
        lowercase=False, strip_punctuation=False, remove_articles=False, collapse_whitespace=False
    )
    result = await ExactMatchEvaluator(strict).evaluate(samples)
    assert result.aggregate["exact_match"] == 0.0


async def test_token_f1_takes_best_reference() -> None:
    samples = [EvalSample(id="1", output="cat sat", references=["dog", "the cat sat down"])]
    result = await TokenF1Evaluator().evaluate(samples)
    assert result.aggregate["token_f1"] == pytest.approx(0.8)


async def test_matching_refuses_missing_references() -> None:
    with pytest.raises(InvalidInputError, match="reference"):
        await TokenF1Evaluator().evaluate([EvalSample(id="q", output="x")])


async def test_usage_aggregates_latency_tokens_and_cost() -> None:
    samples = [
        EvalSample(
            id=str(i),
            metadata={"latency_s": float(i), "prompt_tokens": 10, "completion_tokens": 5 * i},
        )
        for i in range(1, 5)
    ]
    cfg = UsageConfig(prompt_price_per_million=1.0, completion_price_per_million=2.0)
    result = await UsageEvaluator(cfg).evaluate(samples)
    agg = result.aggregate
    assert agg["latency_mean_s"] == 2.5
    assert agg["latency_p50_s"] == 2.5
    assert agg["latency_p95_s"] == pytest.approx(3.85)
    assert agg["prompt_tokens_total"] == 40
    assert agg["completion_tokens_total"] == 50
    assert agg["cost_usd_total"] == pytest.approx((40 * 1 + 50 * 2) / 1e6)
    assert agg["completion_tokens_per_s"] == pytest.approx(50 / 10)


async def test_usage_prefers_recorded_cost_and_checks_types() -> None:
    sample = EvalSample(id="a", metadata={"latency_s": 1, "cost_usd": 0.5, "prompt_tokens": 9})
    result = await UsageEvaluator(UsageConfig(prompt_price_per_million=1e6)).evaluate([sample])
    assert result.aggregate["cost_usd_total"] == 0.5
    with pytest.raises(InvalidInputError, match="latency_s"):
        await UsageEvaluator().evaluate([EvalSample(id="b")])
    with pytest.raises(InvalidInputError, match="must be a number"):
        await UsageEvaluator().evaluate([EvalSample(id="c", metadata={"latency_s": "fast"})])
    with pytest.raises(InvalidInputError, match="negative"):
        await UsageEvaluator().evaluate([EvalSample(id="d", metadata={"latency_s": -1})])
    lenient = await UsageEvaluator(UsageConfig(require_latency=False)).evaluate(
        [EvalSample(id="e")]
    )
    assert "latency_mean_s" not in lenient.aggregate
