"""Toxicity as an evaluation metric: the guard's classifier applied offline to eval samples.

The same ``ToxicityClassifier`` as the live guard (``llmloop.guards.toxicity``), batched over a
suite. Aggregates: ``toxicity_rate`` (share of outputs at or above the threshold; a harm, lower is
better) and ``toxicity_mean`` (mean score). Online scoring of sampled traffic uses this same
evaluator on ``EvalSample``s built from traces. It does not block anything.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import ClassVar, Literal

from pydantic import Field

from llmloop.core.evals import EvalResult, EvalSample, SampleScore
from llmloop.evaluators.base import Evaluator, EvaluatorConfig
from llmloop.guards.toxicity import (
    DEFAULT_TOXICITY_THRESHOLD,
    ProfanityCheckClassifier,
    ToxicityClassifier,
    check_scores,
)


class ToxicityEvalConfig(EvaluatorConfig):
    threshold: float = Field(
        default=DEFAULT_TOXICITY_THRESHOLD,
        ge=0.0,
        le=1.0,
        description="Score at or above which a text counts as toxic.",
    )
    field: Literal["output", "input"] = Field(
        default="output", description="Which text of each sample is scored."
    )
    batch_size: int = Field(default=256, ge=1, description="Texts per classifier call.")


class ToxicityEvaluator(Evaluator):
    """``toxicity_rate`` and ``toxicity_mean`` over samples (per-sample ``toxicity`` score)."""

    name: ClassVar[str] = "toxicity"
    config_cls = ToxicityEvalConfig
    config: ToxicityEvalConfig

    def __init__(
        self, config: ToxicityEvalConfig | None = None, classifier: ToxicityClassifier | None = None
    ) -> None:
        super().__init__(config)
        self.classifier: ToxicityClassifier = classifier or ProfanityCheckClassifier()

    def score_texts(self, texts: Sequence[str]) -> list[float]:
        """Scores of ``texts`` in batches (synchronous; used by bias probes as well)."""
        scores: list[float] = []
        size = self.config.batch_size
        for i in range(0, len(texts), size):
            batch = list(texts[i : i + size])
            got = self.classifier.scores(batch)
            check_scores(got, len(batch))
            scores += got
        return scores

    async def evaluate(self, samples: Sequence[EvalSample]) -> EvalResult:
        texts = [getattr(s, self.config.field) for s in samples]
        scores = await asyncio.to_thread(self.score_texts, texts)
        threshold = self.config.threshold
        flagged = [s >= threshold for s in scores]
        n = len(scores) or 1
        return EvalResult(
            evaluator=self.name,
            aggregate={
                "toxicity_rate": sum(flagged) / n,
                "toxicity_mean": sum(scores) / n,
            },
            samples=[
                SampleScore(
                    sample_id=s.id or str(i),
                    scores={"toxicity": score},
                    details={"toxic": hit},
                )
                for i, (s, score, hit) in enumerate(zip(samples, scores, flagged, strict=True))
            ],
            details={"threshold": threshold, "n": len(scores)},
        )
