"""Faithfulness: claims split, support scored against context/reference, unsupported listed."""

from __future__ import annotations

import pytest

from llmloop.core.evals import EvalSample
from llmloop.errors import InvalidInputError
from llmloop.evaluators.hallucination import (
    FaithfulnessConfig,
    FaithfulnessEvaluator,
    lexical_support,
    split_claims,
)

CONTEXT = (
    "The Eiffel Tower is in Paris. It was completed in 1889 for the World's Fair. "
    "It is 330 metres tall and made of wrought iron."
)
FAITHFUL = (
    "The Eiffel Tower is located in Paris. It was completed in 1889. It is made of wrought iron."
)
INVENTED = (
    "The Eiffel Tower is in Paris. It was completed in 1925 by Gustav Klimt. "
    "The tower is painted bright green every summer."
)


def test_split_claims_sentences_clauses_and_fragments() -> None:
    text = (
        "Paris is the capital of France, and it has 2.1 million people; "
        "the Seine flows through it. Sure!"
    )
    assert split_claims(text) == [
        "Paris is the capital of France",
        "it has 2.1 million people",
        "the Seine flows through it.",
    ]
    assert split_claims("- first point here\n- second point here") == [
        "first point here",
        "second point here",
    ]


def test_lexical_support_penalises_new_numbers() -> None:
    assert lexical_support("completed in 1889", CONTEXT) == 1.0
    assert lexical_support("completed in 1925", CONTEXT) == pytest.approx(0.25)


async def test_lexical_mode_lists_unsupported_claims() -> None:
    samples = [
        EvalSample(
            id="ok", output="The Eiffel Tower is in Paris. It is 330 metres tall.", context=CONTEXT
        ),
        EvalSample(id="bad", output=INVENTED, context=CONTEXT),
    ]
    result = await FaithfulnessEvaluator(FaithfulnessConfig(use_embeddings=False)).evaluate(samples)
    ok, bad = result.samples
    assert ok.scores["faithfulness"] == 1.0 and ok.details["unsupported"] == []
    assert bad.details["unsupported"] == [
        "It was completed in 1925 by Gustav Klimt.",
        "The tower is painted bright green every summer.",
    ]
    assert result.aggregate["hallucination_rate"] == 0.5


async def test_embeddings_accept_paraphrase_and_reject_inventions() -> None:
    samples = [
        EvalSample(id="faithful", output=FAITHFUL, context=CONTEXT),
        EvalSample(id="invented", output=INVENTED, reference=CONTEXT),
    ]
    result = await FaithfulnessEvaluator().evaluate(samples)
    faithful, invented = result.samples
    assert faithful.scores["unsupported_claims"] == 0
    assert invented.scores["unsupported_claims"] == 2
    assert result.aggregate["faithfulness"] == pytest.approx((1 + 1 / 3) / 2)


async def test_judge_callable_is_blended_in() -> None:
    calls: list[tuple[str, str]] = []

    async def judge(claim: str, evidence: str) -> float:
        calls.append((claim, evidence))
        return 0.0 if "green" in claim else 1.0

    cfg = FaithfulnessConfig(use_embeddings=False, judge_weight=1.0)
    result = await FaithfulnessEvaluator(cfg, judge=judge).evaluate(
        [EvalSample(id="x", output=INVENTED, context=CONTEXT)]
    )
    assert result.samples[0].details["unsupported"] == [
        "The tower is painted bright green every summer."
    ]
    assert len(calls) == 3 and result.details["judge"] is True


async def test_missing_evidence_is_an_error() -> None:
    evaluator = FaithfulnessEvaluator(FaithfulnessConfig(against="context", use_embeddings=False))
    with pytest.raises(InvalidInputError, match="no context"):
        await evaluator.evaluate([EvalSample(id="q", output="x y z", reference="ref only")])


async def test_engine_claim_judge_parses_scores_and_survives_failures() -> None:
    from llmloop.core.chat import EngineSpec, GenerationRequest, GenerationResult
    from llmloop.engines.echo import EchoEngine
    from llmloop.errors import UpstreamError
    from llmloop.evaluators.hallucination import engine_claim_judge

    class Scripted(EchoEngine):
        async def chat(self, req: GenerationRequest) -> GenerationResult:
            assert req.messages is not None
            prompt = req.messages[0].content
            if "Claim: boom" in prompt:
                raise UpstreamError("down")
            if "green" in prompt.split("Claim:")[1]:
                return GenerationResult(text="Score: 0")
            if "mumble" in prompt:
                return GenerationResult(text="no idea")
            return GenerationResult(text="Score: 1")

    judge = engine_claim_judge(Scripted(EngineSpec(kind="echo", model="j")))
    assert await judge("The tower is green.", CONTEXT) == 0.0
    assert await judge("The tower is in Paris.", CONTEXT) == 1.0
    assert await judge("mumble mumble", CONTEXT) == 0.5
    assert await judge("boom", CONTEXT) == 0.5
