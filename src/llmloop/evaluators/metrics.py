"""Reference-overlap metrics through their canonical libraries: BLEU and chrF (sacrebleu), ROUGE.

One concept: how much a model's output overlaps with reference text. The scores are exactly what
sacrebleu and rouge-score compute (tests reproduce their documented examples); this module only
maps samples to their inputs and aggregates. It does not normalise text for matching
(see ``matching.py``) nor embed it (see ``similarity.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Literal

from pydantic import Field

from llmloop.core.evals import EvalResult, EvalSample, SampleScore
from llmloop.errors import ConfigError, InvalidInputError
from llmloop.evaluators.base import Evaluator, EvaluatorConfig


def sample_references(sample: EvalSample) -> list[str]:
    """Every reference of a sample (``references`` first, then ``reference``), duplicates kept."""
    refs = list(sample.references or [])
    if sample.reference is not None and sample.reference not in refs:
        refs.insert(0, sample.reference)
    return refs


def require_references(samples: Sequence[EvalSample], metric: str) -> list[list[str]]:
    """References per sample; raise :class:`InvalidInputError` naming the samples without any."""
    if not samples:
        raise InvalidInputError(f"{metric}: no samples to score")
    refs = [sample_references(s) for s in samples]
    missing = [s.id or str(i) for i, (s, r) in enumerate(zip(samples, refs, strict=True)) if not r]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise InvalidInputError(
            f"{metric} needs a reference for every sample; missing for: {shown}",
            missing=missing,
        )
    return refs


def _ref_streams(refs: list[list[str]]) -> list[list[str | None]]:
    """Transpose per-sample references into sacrebleu's reference streams (None pads)."""
    width = max(len(r) for r in refs)
    return [[r[i] if i < len(r) else None for r in refs] for i in range(width)]


class BleuConfig(EvaluatorConfig):
    """sacrebleu BLEU options (the defaults are sacrebleu's, i.e. the standard signature)."""

    tokenize: str | None = Field(
        default=None, description="sacrebleu tokenizer: 13a (default), intl, zh, char, none, ..."
    )
    lowercase: bool = Field(default=False, description="Lower-case before scoring.")
    smooth_method: Literal["none", "floor", "add-k", "exp"] = Field(
        default="exp", description="Smoothing for corpus-level BLEU."
    )
    effective_order: bool = Field(
        default=True,
        description="Sentence-level BLEU ignores n-gram orders with no matches (short texts).",
    )


class BleuEvaluator(Evaluator):
    """Corpus BLEU (aggregate ``bleu``, 0-100) and sentence BLEU per sample (``bleu``)."""

    name: ClassVar[str] = "bleu"
    config_cls: ClassVar[type[EvaluatorConfig]] = BleuConfig
    config: BleuConfig

    async def evaluate(self, samples: Sequence[EvalSample]) -> EvalResult:
        from sacrebleu.metrics import BLEU

        refs = require_references(samples, "bleu")
        hyps = [s.output for s in samples]
        cfg = self.config
        corpus = BLEU(
            tokenize=cfg.tokenize, lowercase=cfg.lowercase, smooth_method=cfg.smooth_method
        )
        score = corpus.corpus_score(hyps, _ref_streams(refs))  # type: ignore[arg-type]
        sentence = BLEU(
            tokenize=cfg.tokenize, lowercase=cfg.lowercase, effective_order=cfg.effective_order
        )
        per = [
            SampleScore(sample_id=s.id, scores={"bleu": sentence.sentence_score(s.output, r).score})
            for s, r in zip(samples, refs, strict=True)
        ]
        mean = sum(p.scores["bleu"] for p in per) / len(per)
        return EvalResult(
            evaluator=self.name,
            aggregate={"bleu": score.score, "bleu_sentence_mean": mean, "bleu_bp": score.bp},
            samples=per,
            details={
                "signature": str(corpus.get_signature()),
                "precisions": list(score.precisions),
                "sys_len": score.sys_len,
                "ref_len": score.ref_len,
            },
        )


class ChrfConfig(EvaluatorConfig):
    """sacrebleu chrF options (chrF2 by default; ``word_order=2`` gives chrF++)."""

    char_order: int = Field(default=6, ge=1, description="Character n-gram order.")
    word_order: int = Field(default=0, ge=0, description="Word n-gram order (2 = chrF++).")
    beta: int = Field(default=2, ge=1, description="Recall weight in the F-score.")
    lowercase: bool = Field(default=False, description="Lower-case before scoring.")
    whitespace: bool = Field(default=False, description="Keep whitespace in character n-grams.")


class ChrfEvaluator(Evaluator):
    """Corpus chrF (aggregate ``chrf``, 0-100) and sentence chrF per sample (``chrf``)."""

    name: ClassVar[str] = "chrf"
    config_cls: ClassVar[type[EvaluatorConfig]] = ChrfConfig
    config: ChrfConfig

    async def evaluate(self, samples: Sequence[EvalSample]) -> EvalResult:
        from sacrebleu.metrics import CHRF

        refs = require_references(samples, "chrf")
        cfg = self.config
        metric = CHRF(
            char_order=cfg.char_order,
            word_order=cfg.word_order,
            beta=cfg.beta,
            lowercase=cfg.lowercase,
            whitespace=cfg.whitespace,
        )
        score = metric.corpus_score([s.output for s in samples], _ref_streams(refs))  # type: ignore[arg-type]
        per = [
            SampleScore(sample_id=s.id, scores={"chrf": metric.sentence_score(s.output, r).score})
            for s, r in zip(samples, refs, strict=True)
        ]
        mean = sum(p.scores["chrf"] for p in per) / len(per)
        return EvalResult(
            evaluator=self.name,
            aggregate={"chrf": score.score, "chrf_sentence_mean": mean},
            samples=per,
            details={"signature": str(metric.get_signature())},
        )


RougeType = Literal["rouge1", "rouge2", "rougeL", "rougeLsum"]
_ALL_ROUGE: tuple[RougeType, ...] = ("rouge1", "rouge2", "rougeL", "rougeLsum")


class RougeConfig(EvaluatorConfig):
    """rouge-score options; scores are F-measures in 0-1, max over references."""

    rouge_types: list[RougeType] = Field(
        default_factory=lambda: list(_ALL_ROUGE),
        min_length=1,
        description="Which ROUGE variants to compute.",
    )
    use_stemmer: bool = Field(default=True, description="Porter-stem tokens before matching.")
    split_summaries: bool = Field(
        default=False,
        description="rougeLsum: split texts into sentences with nltk (needs its 'punkt_tab' "
        "data) instead of at newlines (by default sentences are the lines, as rouge-score "
        "expects).",
    )
    measure: Literal["fmeasure", "precision", "recall"] = Field(
        default="fmeasure", description="Which of the three scores to report."
    )


class RougeEvaluator(Evaluator):
    """ROUGE per sample and its mean per variant (aggregate keys are the variant names)."""

    name: ClassVar[str] = "rouge"
    config_cls: ClassVar[type[EvaluatorConfig]] = RougeConfig
    config: RougeConfig

    async def evaluate(self, samples: Sequence[EvalSample]) -> EvalResult:
        from rouge_score import rouge_scorer

        refs = require_references(samples, "rouge")
        cfg = self.config
        types = list(dict.fromkeys(cfg.rouge_types))
        scorer = rouge_scorer.RougeScorer(
            types, use_stemmer=cfg.use_stemmer, split_summaries=cfg.split_summaries
        )
        per: list[SampleScore] = []
        for sample, sample_refs in zip(samples, refs, strict=True):
            # score(target, prediction); score_multi takes the best reference per variant.
            try:
                raw = (
                    scorer.score(sample_refs[0], sample.output)
                    if len(sample_refs) == 1
                    else scorer.score_multi(sample_refs, sample.output)
                )
            except LookupError as exc:  # nltk's sentence splitter data is a separate download
                raise ConfigError(
                    "rouge split_summaries needs nltk's 'punkt_tab' data, which is not installed "
                    "(python -m nltk.downloader punkt_tab); or put one sentence per line and "
                    "leave split_summaries off"
                ) from exc
            scores = {t: float(getattr(raw[t], cfg.measure)) for t in types}
            per.append(SampleScore(sample_id=sample.id, scores=scores))
        aggregate = {t: sum(p.scores[t] for p in per) / len(per) for t in types}
        return EvalResult(
            evaluator=self.name,
            aggregate=aggregate,
            samples=per,
            details={"measure": cfg.measure, "use_stemmer": cfg.use_stemmer},
        )


__all__ = [
    "BleuConfig",
    "BleuEvaluator",
    "ChrfConfig",
    "ChrfEvaluator",
    "RougeConfig",
    "RougeEvaluator",
    "require_references",
    "sample_references",
]
