"""The toxicity evaluator: rates and means over samples, with the real and a fake classifier."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from llmloop.core.evals import EvalSample
from llmloop.errors import InvalidInputError
from llmloop.evaluators.toxicity import ToxicityEvalConfig, ToxicityEvaluator


class Fixed:
    def __init__(self, scores: list[float]) -> None:
        self._scores = scores

    def scores(self, texts: Sequence[str]) -> list[float]:
        return self._scores[: len(texts)]


async def test_rate_and_mean_with_the_default_classifier() -> None:
    samples = [
        EvalSample(id="a", output="Thanks, that solved my problem."),
        EvalSample(id="b", output="Shut up, you worthless idiot."),
        EvalSample(id="c", output="The meeting moved to 3pm."),
        EvalSample(id="d", output="Go to hell, you stupid bastard."),
    ]
    result = await ToxicityEvaluator().evaluate(samples)
    assert result.aggregate["toxicity_rate"] == 0.5
    assert 0.0 < result.aggregate["toxicity_mean"] < 1.0
    assert [s.details["toxic"] for s in result.samples] == [False, True, False, True]


async def test_input_field_batches_and_threshold() -> None:
    samples = [EvalSample(id=str(i), input="x", output="y") for i in range(5)]
    evaluator = ToxicityEvaluator(
        ToxicityEvalConfig(field="input", batch_size=2, threshold=0.3),
        classifier=Fixed([0.1, 0.3, 0.9, 0.2, 0.4]),
    )
    result = await evaluator.evaluate(samples)
    # Batches of two hand the classifier slices; Fixed answers from the start of its list.
    assert [s.scores["toxicity"] for s in result.samples] == [0.1, 0.3, 0.1, 0.3, 0.1]
    assert result.aggregate["toxicity_rate"] == pytest.approx(2 / 5)


async def test_broken_classifier_is_reported() -> None:
    evaluator = ToxicityEvaluator(classifier=Fixed([]))
    with pytest.raises(InvalidInputError, match="one score"):
        await evaluator.evaluate([EvalSample(id="a", output="hello")])


async def test_empty_input_gives_zero_rates() -> None:
    result = await ToxicityEvaluator().evaluate([])
    assert result.aggregate == {"toxicity_rate": 0.0, "toxicity_mean": 0.0}
