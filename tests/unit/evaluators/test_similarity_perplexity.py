"""Embedding similarity (offline MiniLM) and perplexity from engine or local-model log-probs."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from llmloop.core.chat import EngineSpec
from llmloop.core.evals import EvalSample
from llmloop.engines.echo import EchoEngine
from llmloop.errors import ConfigError, InvalidInputError, UpstreamError
from llmloop.evaluators.perplexity import (
    HFLogprobScorer,
    PerplexityConfig,
    PerplexityEvaluator,
    engine_logprob_scorer,
)
from llmloop.evaluators.similarity import SimilarityConfig, SimilarityEvaluator, load_embedder


@pytest.fixture(scope="session")
def minilm() -> Any:
    pytest.importorskip("sentence_transformers")
    return load_embedder(None, "cpu")  # cached: the evaluator reuses this instance


async def test_similarity_ranks_paraphrase_above_unrelated(minilm: Any) -> None:
    samples = [
        EvalSample(
            id="para", output="The cat is sitting on the mat.", reference="A cat sits on a mat."
        ),
        EvalSample(
            id="off", output="Stock markets fell sharply today.", reference="A cat sits on a mat."
        ),
        EvalSample(id="same", output="Hello there.", reference="Hello there."),
    ]
    result = await SimilarityEvaluator(SimilarityConfig(threshold=0.5)).evaluate(samples)
    scores = {s.sample_id: s.scores["cosine_similarity"] for s in result.samples}
    assert scores["same"] == pytest.approx(1.0, abs=1e-5)
    assert scores["para"] > 0.6 > scores["off"]
    assert result.aggregate["similarity_pass_rate"] == pytest.approx(2 / 3)
    # Parity with sentence-transformers' own cosine similarity.
    from sentence_transformers.util import cos_sim

    emb = minilm.encode(["The cat is sitting on the mat.", "A cat sits on a mat."])
    assert scores["para"] == pytest.approx(float(cos_sim(emb[0], emb[1])), abs=1e-5)


async def test_similarity_best_reference_and_other_targets(minilm: Any) -> None:
    multi = EvalSample(id="m", output="Paris", references=["Berlin is big", "Paris"])
    result = await SimilarityEvaluator().evaluate([multi])
    assert result.aggregate["cosine_similarity"] == pytest.approx(1.0, abs=1e-5)
    ctx = SimilarityEvaluator(SimilarityConfig(compare_to="context"))
    with pytest.raises(InvalidInputError, match="has no context"):
        await ctx.evaluate([EvalSample(id="c", output="x")])
    with pytest.raises(InvalidInputError, match="reference"):
        await SimilarityEvaluator().evaluate([EvalSample(id="r", output="x")])


def test_similarity_bad_model_path_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot load embedding model"):
        load_embedder(str(tmp_path / "nothing-here"), "cpu")


async def test_perplexity_from_engine_echo_logprobs() -> None:
    # The echo engine gives every scored token log-prob -1 (the first prompt token has none).
    engine = EchoEngine(EngineSpec(kind="echo", model="echo"))
    evaluator = PerplexityEvaluator(scorer=engine_logprob_scorer(engine))
    samples = [EvalSample(id="a", output="one two three"), EvalSample(id="b", output="x y")]
    result = await evaluator.evaluate(samples)
    assert result.aggregate["perplexity"] == pytest.approx(math.e)
    assert result.aggregate["n_tokens"] == 3.0  # 2 + 1 scored tokens
    assert [s.scores["n_tokens"] for s in result.samples] == [2.0, 1.0]


async def test_perplexity_is_token_weighted_and_records_empty_texts() -> None:
    async def scorer(texts: list[str]) -> list[list[float]]:
        table = {"long": [-1.0] * 9, "short": [-4.0], "empty": []}
        return [table[t] for t in texts]

    samples = [EvalSample(id=t, output=t) for t in ("long", "short", "empty")]
    result = await PerplexityEvaluator(scorer=scorer).evaluate(samples)
    assert result.aggregate["perplexity"] == pytest.approx(math.exp((9 + 4) / 10))
    assert result.aggregate["perplexity_sample_mean"] == pytest.approx((math.e + math.exp(4)) / 2)
    assert result.details["failed"] == [{"sample_id": "empty", "reason": "no scored tokens"}]


async def test_perplexity_errors() -> None:
    with pytest.raises(ConfigError, match="scorer or 'model_path'"):
        await PerplexityEvaluator().evaluate([EvalSample(id="a", output="x")])

    async def short(texts: list[str]) -> list[list[float]]:
        return []

    with pytest.raises(UpstreamError, match="0 results for 1"):
        await PerplexityEvaluator(scorer=short).evaluate([EvalSample(id="a", output="x")])
    ref = PerplexityEvaluator(PerplexityConfig(text_field="reference"), scorer=short)
    with pytest.raises(InvalidInputError, match="no reference"):
        await ref.evaluate([EvalSample(id="a", output="x")])


async def test_engine_scorer_needs_logprobs() -> None:
    class NoLogprobs(EchoEngine):
        async def chat(self, req):  # type: ignore[no-untyped-def]
            result = await super().chat(req)
            return result.model_copy(update={"logprobs": None})

    scorer = engine_logprob_scorer(NoLogprobs(EngineSpec(kind="echo")))
    with pytest.raises(UpstreamError, match="no log-probs"):
        await scorer(["hello"])


@pytest.mark.slow
def test_hf_scorer_batches_match_single_and_model_loss(tiny_model_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    texts = [
        "Hello, how can I help you today?",
        "Thanks.",
        "Your order has shipped and will arrive.",
    ]
    batched = HFLogprobScorer(str(tiny_model_dir), batch_size=3).score_sync(texts)
    single = HFLogprobScorer(str(tiny_model_dir), batch_size=1).score_sync(texts)
    for a, b in zip(batched, single, strict=True):
        assert a == pytest.approx(b, abs=1e-4)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    ids = torch.tensor([[tok.bos_token_id, *tok(texts[0])["input_ids"]]])
    with torch.inference_mode():
        loss = float(model(input_ids=ids, labels=ids).loss)
    assert -sum(single[0]) / len(single[0]) == pytest.approx(loss, abs=1e-4)


@pytest.mark.slow
async def test_perplexity_evaluator_with_local_model(tiny_model_dir: Path) -> None:
    cfg = PerplexityConfig(model_path=str(tiny_model_dir), batch_size=2)
    samples = [EvalSample(id=str(i), output=t) for i, t in enumerate(["Hello there.", "Goodbye!"])]
    result = await PerplexityEvaluator(cfg).evaluate(samples)
    assert 1.0 < result.aggregate["perplexity"] < 10_000
    bad = PerplexityEvaluator(PerplexityConfig(model_path="/nonexistent/model"))
    with pytest.raises(ConfigError, match="cannot load model"):
        await bad.evaluate(samples)
