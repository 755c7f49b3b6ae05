"""Counterfactual bias probes: a model biased on one attribute shows a gap there only."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmloop.core.chat import EngineSpec, GenerationRequest, GenerationResult
from llmloop.core.evals import EvalSample
from llmloop.engines.echo import EchoEngine
from llmloop.errors import ConfigError, InvalidInputError
from llmloop.evaluators.bias import (
    BiasEvaluator,
    SentimentLexicon,
    build_bias_samples,
    load_probe_set,
    run_bias_probes,
)


class WomenRefused(EchoEngine):
    """Warm to everyone except women, whom it refuses and describes negatively."""

    async def chat(self, req: GenerationRequest) -> GenerationResult:
        assert req.messages is not None
        if " woman" in req.messages[-1].content:
            return GenerationResult(text="I'm sorry, but I can't help. She seems unreliable.")
        return GenerationResult(text="They are a wonderful, reliable and talented person.")


def engine(cls: type[EchoEngine] = EchoEngine, **options: object) -> EchoEngine:
    return cls(EngineSpec(kind="echo", options=dict(options)))


def test_shipped_probe_set_covers_five_attributes() -> None:
    probes = load_probe_set()
    assert set(probes.attributes) == {"gender", "ethnicity", "religion", "age", "nationality"}
    assert all("{person}" in t for t in probes.templates)


async def test_biased_model_shows_significant_gap_on_that_attribute_only() -> None:
    result = await run_bias_probes(engine(WomenRefused), attributes=["gender", "age"])
    gender = result.details["attributes"]["gender"]
    assert gender["refusal"]["gap"] == 1.0 and gender["refusal"]["significant"]
    assert gender["sentiment"]["group_means"]["woman"] < gender["sentiment"]["group_means"]["man"]
    assert gender["refusal"]["p_value"] < 0.01
    age = result.details["attributes"]["age"]
    assert not any(m["significant"] for m in age.values())
    assert result.aggregate["significant_gaps"] == 2.0  # refusal and sentiment
    assert result.aggregate["gap.age.refusal"] == 0.0


async def test_unbiased_model_has_no_significant_gap() -> None:
    fair = engine(reply="A capable and friendly person; I would recommend them.")
    result = await run_bias_probes(fair, attributes=["religion"])
    assert result.aggregate["significant_gaps"] == 0.0


async def test_samples_carry_metadata_and_judge_is_a_metric() -> None:
    samples = await build_bias_samples(engine(), attributes=["age"])
    assert len(samples) == 3 * len(load_probe_set().templates)
    assert {s.metadata["group"] for s in samples} == {"young", "middle", "old"}

    async def judge(prompt: str, answer: str) -> float:
        return 1.0 if "75-year-old" in prompt else 5.0

    result = await BiasEvaluator(judge=judge).evaluate(samples)
    judged = result.details["attributes"]["age"]["judge"]
    assert judged["gap"] == 4.0 and judged["significant"]


def test_sentiment_lexicon_and_negation() -> None:
    lexicon = SentimentLexicon()
    assert lexicon.score("She is a wonderful and reliable nurse.") == 1.0
    assert lexicon.score("He is not reliable and rather lazy.") == -1.0
    assert lexicon.score("The meeting is at noon.") == 0.0


async def test_bad_inputs_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="metadata"):
        await BiasEvaluator().evaluate([EvalSample(id="x", output="y")])
    with pytest.raises(InvalidInputError, match="unknown bias attribute"):
        await build_bias_samples(engine(), attributes=["height"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\ntemplates: ['no slot', 'none']\nattributes: {g: {a: x, b: y}}\n")
    with pytest.raises(ConfigError, match="slot"):
        load_probe_set(bad)
