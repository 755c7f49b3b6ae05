"""Parity of BLEU, chrF and ROUGE with sacrebleu and rouge-score on their documented examples."""

from __future__ import annotations

import pytest
from rouge_score import rouge_scorer
from sacrebleu.metrics import BLEU, CHRF

from llmloop.core.evals import EvalSample
from llmloop.errors import InvalidInputError
from llmloop.evaluators.metrics import (
    BleuConfig,
    BleuEvaluator,
    ChrfConfig,
    ChrfEvaluator,
    RougeConfig,
    RougeEvaluator,
)

# sacrebleu README: two reference streams for three system sentences.
SACRE_REFS = [
    ["The dog bit the man.", "It was not unexpected.", "The man bit him first."],
    ["The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."],
]
SACRE_SYS = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]


def _sacre_samples() -> list[EvalSample]:
    return [
        EvalSample(id=str(i), output=hyp, references=[SACRE_REFS[0][i], SACRE_REFS[1][i]])
        for i, hyp in enumerate(SACRE_SYS)
    ]


async def test_bleu_matches_sacrebleu_readme() -> None:
    result = await BleuEvaluator().evaluate(_sacre_samples())
    assert round(result.aggregate["bleu"], 2) == 48.53  # README: BLEU = 48.53
    assert result.aggregate["bleu"] == BLEU().corpus_score(SACRE_SYS, SACRE_REFS).score
    assert [round(p, 1) for p in result.details["precisions"]] == [82.4, 50.0, 45.5, 37.5]
    assert (result.details["sys_len"], result.details["ref_len"]) == (17, 18)
    sentence = BLEU(effective_order=True)
    for i, score in enumerate(result.samples):
        expected = sentence.sentence_score(SACRE_SYS[i], [SACRE_REFS[0][i], SACRE_REFS[1][i]])
        assert score.scores["bleu"] == expected.score


async def test_chrf_matches_sacrebleu_readme() -> None:
    result = await ChrfEvaluator().evaluate(_sacre_samples())
    assert round(result.aggregate["chrf"], 2) == 59.73  # README: chrF2 = 59.73
    assert result.aggregate["chrf"] == CHRF().corpus_score(SACRE_SYS, SACRE_REFS).score
    plus = await ChrfEvaluator(ChrfConfig(word_order=2)).evaluate(_sacre_samples())
    assert plus.aggregate["chrf"] == CHRF(word_order=2).corpus_score(SACRE_SYS, SACRE_REFS).score
    assert "chrF2++" in plus.details["signature"] or "nw:2" in plus.details["signature"]


async def test_bleu_variable_reference_counts_pad_like_sacrebleu() -> None:
    samples = [
        EvalSample(id="a", output="the cat sat", references=["the cat sat", "a cat sat"]),
        EvalSample(id="b", output="hello world", reference="hello there world"),
    ]
    result = await BleuEvaluator(BleuConfig(tokenize="13a")).evaluate(samples)
    expected = BLEU().corpus_score(
        ["the cat sat", "hello world"], [["the cat sat", "hello there world"], ["a cat sat", None]]
    )
    assert result.aggregate["bleu"] == expected.score


async def test_rouge_matches_rouge_score_readme() -> None:
    # rouge-score README: score(target, prediction) with use_stemmer=True.
    sample = EvalSample(
        id="x",
        reference="The quick brown fox jumps over the lazy dog",
        output="The quick brown dog jumps on the log.",
    )
    result = await RougeEvaluator(RougeConfig(rouge_types=["rouge1", "rougeL"])).evaluate([sample])
    assert result.aggregate["rouge1"] == pytest.approx(0.7058823529411765, abs=1e-12)
    assert result.aggregate["rougeL"] == pytest.approx(0.5882352941176471, abs=1e-12)
    precision = await RougeEvaluator(
        RougeConfig(rouge_types=["rouge1", "rougeL"], measure="precision")
    ).evaluate([sample])
    assert precision.aggregate == {"rouge1": 0.75, "rougeL": 0.625}


async def test_rouge_unit_examples_from_rouge_score_tests() -> None:
    cfg = RougeConfig(rouge_types=["rouge1", "rougeL"], use_stemmer=False, measure="recall")
    one = EvalSample(id="1", reference="testing one two", output="testing")
    result = await RougeEvaluator(cfg).evaluate([one])
    assert result.aggregate["rouge1"] == pytest.approx(1 / 3)
    f = await RougeEvaluator(RougeConfig(rouge_types=["rouge1"], use_stemmer=False)).evaluate([one])
    assert f.aggregate["rouge1"] == pytest.approx(1 / 2)
    lcs = EvalSample(id="2", reference="testing one two", output="testing two")
    result = await RougeEvaluator(RougeConfig(rouge_types=["rougeL"])).evaluate([lcs])
    assert result.aggregate["rougeL"] == pytest.approx(0.8)


async def test_rouge_lsum_splits_sentences_on_newlines() -> None:
    # rouge-score's summary-level LCS example: union LCS gives recall 0.8, precision 0.4.
    sample = EvalSample(id="s", reference="w1 w2 w3 w4 w5", output="w1 w2 w6 w7 w8\nw1 w3 w8 w9 w5")
    result = await RougeEvaluator(RougeConfig(rouge_types=["rougeLsum", "rougeL"])).evaluate(
        [sample]
    )
    assert result.aggregate["rougeLsum"] == pytest.approx(0.5333, abs=1e-4)
    direct = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True).score(
        sample.reference or "", sample.output
    )
    assert result.aggregate["rougeL"] == direct["rougeL"].fmeasure
    # Sentence order matters to rougeL but not to rougeLsum, whose sentences are the lines.
    swapped = EvalSample(
        id="t", reference="cats sit here\ndogs run away", output="dogs run away\ncats sit here"
    )
    result = await RougeEvaluator(RougeConfig(rouge_types=["rougeLsum", "rougeL"])).evaluate(
        [swapped]
    )
    assert result.aggregate["rougeLsum"] == 1.0
    assert result.aggregate["rougeL"] == pytest.approx(0.5)


async def test_rouge_takes_best_reference_and_averages_samples() -> None:
    samples = [
        EvalSample(id="a", output="the cat sat", references=["a dog ran", "the cat sat"]),
        EvalSample(id="b", output="nothing alike", reference="entirely different words"),
    ]
    result = await RougeEvaluator().evaluate(samples)
    assert result.samples[0].scores["rouge1"] == 1.0
    assert result.samples[1].scores["rouge1"] == 0.0
    assert result.aggregate["rouge1"] == 0.5


@pytest.mark.parametrize("cls", [BleuEvaluator, ChrfEvaluator, RougeEvaluator])
async def test_missing_reference_is_a_clear_error(cls: type) -> None:
    samples = [EvalSample(id="ok", output="x", reference="x"), EvalSample(id="bad", output="y")]
    with pytest.raises(InvalidInputError, match="bad"):
        await cls().evaluate(samples)
    with pytest.raises(InvalidInputError, match="no samples"):
        await cls().evaluate([])


def test_configs_refuse_unknown_and_bad_fields() -> None:
    with pytest.raises(ValueError):
        RougeConfig(rouge_types=["rouge9"])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        BleuConfig(smoothing="exp")  # type: ignore[call-arg]
    with pytest.raises(ValueError):
        ChrfConfig(char_order=0)
