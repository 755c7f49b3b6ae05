"""Answer matching: exact match and SQuAD-style token F1 after configurable normalisation.

One concept: does the answer say the same words as a reference. Normalisation follows the SQuAD
evaluation script (lower-case, drop punctuation and English articles, collapse whitespace), each
step switchable. It does not score fluency or meaning; see ``metrics.py`` and ``similarity.py``.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from collections.abc import Sequence
from typing import ClassVar

from pydantic import Field

from llmloop.core.evals import EvalResult, EvalSample, SampleScore
from llmloop.evaluators.base import Evaluator, EvaluatorConfig
from llmloop.evaluators.metrics import require_references

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


class NormalizeConfig(EvaluatorConfig):
    """Text normalisation applied to outputs and references before comparing."""

    lowercase: bool = Field(default=True, description="Compare case-insensitively.")
    strip_punctuation: bool = Field(
        default=True, description="Remove punctuation (ASCII and Unicode 'P*' categories)."
    )
    remove_articles: bool = Field(default=True, description="Drop the English articles a/an/the.")
    collapse_whitespace: bool = Field(
        default=True, description="Strip and collapse runs of whitespace to one space."
    )


def normalize_text(text: str, cfg: NormalizeConfig) -> str:
    """Normalise ``text`` the SQuAD way, step by step as ``cfg`` allows."""
    if cfg.lowercase:
        text = text.lower()
    if cfg.strip_punctuation:
        text = "".join(
            ch
            for ch in text
            if ch not in string.punctuation and not unicodedata.category(ch).startswith("P")
        )
    if cfg.remove_articles:
        text = _ARTICLES.sub(" ", text)
    if cfg.collapse_whitespace:
        text = " ".join(text.split())
    return text


def token_f1(prediction: str, reference: str, cfg: NormalizeConfig) -> float:
    """SQuAD token F1: harmonic mean of token precision and recall on the bag of tokens."""
    pred = normalize_text(prediction, cfg).split()
    ref = normalize_text(reference, cfg).split()
    if not pred or not ref:
        # SQuAD v2 convention: two empty answers agree, one empty answer scores zero.
        return float(pred == ref)
    common = Counter(pred) & Counter(ref)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(pred)
    recall = same / len(ref)
    return 2 * precision * recall / (precision + recall)


class ExactMatchConfig(NormalizeConfig):
    """Exact match: 1 when the normalised output equals any normalised reference."""


class ExactMatchEvaluator(Evaluator):
    """Share of samples whose output matches a reference exactly (aggregate ``exact_match``)."""

    name: ClassVar[str] = "exact_match"
    config_cls: ClassVar[type[EvaluatorConfig]] = ExactMatchConfig
    config: ExactMatchConfig

    async def evaluate(self, samples: Sequence[EvalSample]) -> EvalResult:
        refs = require_references(samples, "exact_match")
        per = []
        for sample, sample_refs in zip(samples, refs, strict=True):
            out = normalize_text(sample.output, self.config)
            hit = any(out == normalize_text(r, self.config) for r in sample_refs)
            per.append(SampleScore(sample_id=sample.id, scores={"exact_match": float(hit)}))
        mean = sum(p.scores["exact_match"] for p in per) / len(per)
        return EvalResult(evaluator=self.name, aggregate={"exact_match": mean}, samples=per)


class TokenF1Config(NormalizeConfig):
    """Token F1: the best SQuAD F1 over the references of each sample."""


class TokenF1Evaluator(Evaluator):
    """Mean over samples of the best token F1 against the references (aggregate ``token_f1``)."""

    name: ClassVar[str] = "token_f1"
    config_cls: ClassVar[type[EvaluatorConfig]] = TokenF1Config
    config: TokenF1Config

    async def evaluate(self, samples: Sequence[EvalSample]) -> EvalResult:
        refs = require_references(samples, "token_f1")
        per = [
            SampleScore(
                sample_id=s.id,
                scores={"token_f1": max(token_f1(s.output, r, self.config) for r in sample_refs)},
            )
            for s, sample_refs in zip(samples, refs, strict=True)
        ]
        mean = sum(p.scores["token_f1"] for p in per) / len(per)
        return EvalResult(evaluator=self.name, aggregate={"token_f1": mean}, samples=per)


__all__ = [
    "ExactMatchConfig",
    "ExactMatchEvaluator",
    "NormalizeConfig",
    "TokenF1Config",
    "TokenF1Evaluator",
    "normalize_text",
    "token_f1",
]
