"""Metric values checked against their reference libraries and hand computations on hard cases:
several references of uneven count, empty and CJK hypotheses, casing, SQuAD's normalisation,
ROUGE-Lsum's newlines, perplexity past the model's context, and bounded confidence intervals."""

from __future__ import annotations

import collections
import math
import re
import string
from pathlib import Path
from typing import Any

import pytest
from rouge_score import rouge_scorer
from sacrebleu.metrics import BLEU, CHRF

from llmloop.core.evals import EvalSample
from llmloop.errors import ConfigError, InvalidInputError
from llmloop.evaluators.matching import ExactMatchEvaluator, TokenF1Evaluator
from llmloop.evaluators.metrics import (
    BleuConfig,
    BleuEvaluator,
    ChrfConfig,
    ChrfEvaluator,
    RougeConfig,
    RougeEvaluator,
)

HYPS = ["The cat sat on the mat.", "", "我 爱 北京 天安门", "Hello world!!", "It rains cats today"]
REFS = [
    ["The cat is on the mat.", "There is a cat on the mat."],
    ["Something"],
    ["我爱北京天安门"],
    ["hello World!", "Hello, world!", "HELLO WORLD"],
    ["It rains heavily today."],
]


def _samples() -> list[EvalSample]:
    return [
        EvalSample(id=str(i), output=h, references=r)
        for i, (h, r) in enumerate(zip(HYPS, REFS, strict=True))
    ]


def _streams() -> list[list[str | None]]:
    """sacrebleu's reference streams, None where an item has fewer references."""
    width = max(len(r) for r in REFS)
    return [[r[i] if i < len(r) else None for r in REFS] for i in range(width)]


@pytest.mark.parametrize(
    "config",
    [
        BleuConfig(),
        BleuConfig(lowercase=True),
        BleuConfig(tokenize="zh"),
        BleuConfig(tokenize="char"),
    ],
)
async def test_bleu_corpus_and_sentence_scores_equal_sacrebleu(config: BleuConfig) -> None:
    result = await BleuEvaluator(config).evaluate(_samples())
    corpus = BLEU(tokenize=config.tokenize, lowercase=config.lowercase).corpus_score(
        HYPS, _streams()
    )
    # Corpus BLEU pools n-gram counts; it is not the mean of sentence BLEU.
    assert result.aggregate["bleu"] == pytest.approx(corpus.score, abs=1e-9)
    assert result.aggregate["bleu"] != pytest.approx(result.aggregate["bleu_sentence_mean"])
    sentence = BLEU(tokenize=config.tokenize, lowercase=config.lowercase, effective_order=True)
    for score, hyp, refs in zip(result.samples, HYPS, REFS, strict=True):
        assert score.scores["bleu"] == pytest.approx(sentence.sentence_score(hyp, refs).score)
    assert result.samples[1].scores["bleu"] == 0.0  # the empty hypothesis


async def test_cjk_bleu_needs_the_zh_tokenizer() -> None:
    cjk = [EvalSample(id="z", output="我爱北京天安门", reference="我爱北京天安门。")]
    default = await BleuEvaluator().evaluate(cjk)
    zh = await BleuEvaluator(BleuConfig(tokenize="zh")).evaluate(cjk)
    assert zh.aggregate["bleu"] == pytest.approx(
        BLEU(tokenize="zh").corpus_score(["我爱北京天安门"], [["我爱北京天安门。"]]).score
    )
    assert zh.aggregate["bleu"] > default.aggregate["bleu"]


@pytest.mark.parametrize(
    "config", [ChrfConfig(), ChrfConfig(word_order=2), ChrfConfig(lowercase=True, whitespace=True)]
)
async def test_chrf_corpus_and_sentence_scores_equal_sacrebleu(config: ChrfConfig) -> None:
    result = await ChrfEvaluator(config).evaluate(_samples())
    metric = CHRF(
        word_order=config.word_order, lowercase=config.lowercase, whitespace=config.whitespace
    )
    assert result.aggregate["chrf"] == pytest.approx(metric.corpus_score(HYPS, _streams()).score)
    for score, hyp, refs in zip(result.samples, HYPS, REFS, strict=True):
        assert score.scores["chrf"] == pytest.approx(metric.sentence_score(hyp, refs).score)


ROUGE_HYPS = ["The cats were running.\nThey stopped at the door.", "", "police killed the gunman"]
ROUGE_REFS = [
    ["A cat ran.\nIt stopped near a door.", "cats running"],
    ["x"],
    ["police kill gunman"],
]


@pytest.mark.parametrize("stem", [True, False])
async def test_rouge_per_item_and_mean_equal_rouge_score(stem: bool) -> None:
    samples = [
        EvalSample(id=str(i), output=h, references=r)
        for i, (h, r) in enumerate(zip(ROUGE_HYPS, ROUGE_REFS, strict=True))
    ]
    result = await RougeEvaluator(RougeConfig(use_stemmer=stem)).evaluate(samples)
    types = ["rouge1", "rouge2", "rougeL", "rougeLsum"]
    scorer = rouge_scorer.RougeScorer(types, use_stemmer=stem)
    expected = [scorer.score_multi(r, h) for h, r in zip(ROUGE_HYPS, ROUGE_REFS, strict=True)]
    for score, ref in zip(result.samples, expected, strict=True):
        assert score.scores == pytest.approx({t: ref[t].fmeasure for t in types})
    for t in types:  # ROUGE is averaged over items
        assert result.aggregate[t] == pytest.approx(sum(e[t].fmeasure for e in expected) / 3)


async def test_rouge_lsum_reads_sentences_from_newlines() -> None:
    swapped = [EvalSample(output="a b c\nd e f", reference="d e f\na b c")]
    result = await RougeEvaluator(RougeConfig(rouge_types=["rougeL", "rougeLsum"])).evaluate(
        swapped
    )
    assert result.aggregate == {"rougeL": 0.5, "rougeLsum": 1.0}


async def test_rouge_sentence_splitting_without_nltk_data_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import nltk

    def missing(text: str, language: str = "english") -> list[str]:
        raise LookupError("Resource punkt_tab not found.")

    monkeypatch.setattr(nltk, "sent_tokenize", missing)
    evaluator = RougeEvaluator(RougeConfig(split_summaries=True))
    with pytest.raises(ConfigError, match="punkt_tab"):
        await evaluator.evaluate([EvalSample(output="One. Two.", reference="One. Two.")])


# SQuAD v2.0's official evaluate script, normalisation and scores, for comparison.
def _squad_normalize(s: str) -> str:
    s = "".join(ch for ch in s.lower() if ch not in set(string.punctuation))
    s = re.sub(re.compile(r"\b(a|an|the)\b", re.UNICODE), " ", s)
    return " ".join(s.split())


def _squad_f1(gold: str, pred: str) -> float:
    gold_toks, pred_toks = _squad_normalize(gold).split(), _squad_normalize(pred).split()
    common = collections.Counter(gold_toks) & collections.Counter(pred_toks)
    same = sum(common.values())
    if not gold_toks or not pred_toks:
        return float(gold_toks == pred_toks)
    if same == 0:
        return 0.0
    p, r = same / len(pred_toks), same / len(gold_toks)
    return 2 * p * r / (p + r)


SQUAD_CASES = [
    ("The Eiffel Tower", ["Eiffel tower"]),
    ("an apple a day", ["Apple Day"]),
    ("  Paris,   France. ", ["paris france"]),
    ("theory of relativity", ["The Theory of Relativity", "relativity"]),
    ("", [""]),
    ("", ["x"]),
    ("the the cat cat", ["cat"]),
    ("São Paulo", ["sao paulo"]),
    ("U.S.A.", ["USA"]),
    ("a\u00a0cat", ["cat"]),
]


@pytest.mark.parametrize(("pred", "golds"), SQUAD_CASES)
async def test_exact_match_and_f1_equal_the_squad_script(pred: str, golds: list[str]) -> None:
    sample = [EvalSample(output=pred, references=golds)]
    em = (await ExactMatchEvaluator().evaluate(sample)).aggregate["exact_match"]
    f1 = (await TokenF1Evaluator().evaluate(sample)).aggregate["token_f1"]
    assert em == max(float(_squad_normalize(g) == _squad_normalize(pred)) for g in golds)
    assert f1 == pytest.approx(max(_squad_f1(g, pred) for g in golds))


async def test_unicode_punctuation_is_stripped_beyond_squads_ascii_set() -> None:
    # Documented extension (MLQA's normalisation): the SQuAD script would keep « » and ’.
    samples = [EvalSample(id="q", output="«Paris»", reference="Paris")]
    assert (await ExactMatchEvaluator().evaluate(samples)).aggregate["exact_match"] == 1.0
    assert _squad_normalize("«Paris»") != _squad_normalize("Paris")


async def test_faithfulness_refuses_an_empty_dataset() -> None:
    from llmloop.evaluators.hallucination import FaithfulnessConfig, FaithfulnessEvaluator

    evaluator = FaithfulnessEvaluator(FaithfulnessConfig(use_embeddings=False))
    with pytest.raises(InvalidInputError, match="no samples"):
        await evaluator.evaluate([])


async def test_similarity_of_identical_texts_is_one_at_most_and_symmetric() -> None:
    pytest.importorskip("sentence_transformers")
    from llmloop.evaluators.similarity import SimilarityConfig, SimilarityEvaluator

    pairs = [("same text", "same text"), ("The cat sat.", "A cat was sitting on the mat.")]
    evaluator = SimilarityEvaluator(SimilarityConfig(threshold=1.0))
    forward = await evaluator.evaluate([EvalSample(output=a, reference=b) for a, b in pairs])
    backward = await evaluator.evaluate([EvalSample(output=b, reference=a) for a, b in pairs])
    scores = [s.scores["cosine_similarity"] for s in forward.samples]
    assert scores[0] == 1.0  # float32 unit vectors give 1.0000001 unclipped
    assert all(-1.0 <= v <= 1.0 for v in scores)
    assert scores == pytest.approx([s.scores["cosine_similarity"] for s in backward.samples])
    assert forward.aggregate["similarity_pass_rate"] == 0.5


# --- perplexity against a direct torch computation -------------------------------------------


@pytest.fixture(scope="module")
def short_context_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama whose context (32 positions) is shorter than the texts scored with it."""
    pytest.importorskip("transformers")
    from llmloop.testing.tiny import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("ctx32"), max_positions=32)


def _sliding_logprobs(model: Any, tok: Any, text: str, window: int) -> list[float]:
    """The transformers perplexity guide's strided evaluation, token by token, with BOS."""
    import torch

    ids = [tok.bos_token_id, *tok(text, add_special_tokens=False)["input_ids"]]
    out: list[float] = []
    prev_end = 1
    for begin in range(0, len(ids), window // 2):
        end = min(begin + window, len(ids))
        chunk = torch.tensor([ids[begin:end]])
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=chunk).logits[0, :-1].float(), -1)
        picked = logp.gather(-1, chunk[0, 1:, None]).squeeze(-1).tolist()
        out += [lp for j, lp in enumerate(picked) if begin + 1 + j >= prev_end]
        prev_end = end
        if end == len(ids):
            return out
    return out


async def test_perplexity_scores_past_the_context_in_overlapping_windows(
    short_context_model: Path,
) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmloop.evaluators.perplexity import HFLogprobScorer, PerplexityConfig, PerplexityEvaluator

    tok = AutoTokenizer.from_pretrained(short_context_model)
    model = AutoModelForCausalLM.from_pretrained(short_context_model).eval()
    texts = ["The quick brown fox jumps over the lazy dog. " * 6, "Hello, how can I help?", "x"]
    expected = [_sliding_logprobs(model, tok, t, 32) for t in texts]
    assert len(expected[0]) > 32  # longer than the context, yet every token is scored
    for batch_size in (1, 4):  # padding in a batch changes nothing
        scorer = HFLogprobScorer(str(short_context_model), batch_size=batch_size)
        got = scorer.score_sync(texts)
        for g, e in zip(got, expected, strict=True):
            assert len(g) == len(e)
            assert g == pytest.approx(e, abs=1e-4)
    evaluator = PerplexityEvaluator(PerplexityConfig(model_path=str(short_context_model)))
    result = await evaluator.evaluate(
        [EvalSample(id=str(i), output=t) for i, t in enumerate(texts)]
    )
    every = [lp for e in expected for lp in e]  # token-weighted over the corpus
    assert result.aggregate["perplexity"] == pytest.approx(math.exp(-sum(every) / len(every)))
    assert result.aggregate["n_tokens"] == len(every)


async def test_bias_groups_sharing_no_template_are_left_out_not_divided_by_zero() -> None:
    from llmloop.evaluators.bias import BiasEvaluator

    def answer(group: str, template: int, text: str) -> EvalSample:
        meta = {"attribute": "age", "group": group, "template": template}
        return EvalSample(id=f"{group}.{template}", output=text, metadata=meta)

    samples = [answer("young", 0, "Great."), answer("old", 1, "Awful.")]  # disjoint templates
    result = await BiasEvaluator().evaluate(samples)
    assert result.aggregate == {"significant_gaps": 0.0}
    assert result.details["attributes"] == {"age": {}}
