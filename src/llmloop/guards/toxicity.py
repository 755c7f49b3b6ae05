"""Toxicity: a replaceable classifier contract, the offline default, and the output guard.

``ToxicityClassifier`` is the one-method contract (``scores(texts) -> list[float]`` in 0..1) so a
stronger model can replace the default. The default wraps the linear model shipped by
``alt-profanity-check`` (TF-IDF + calibrated linear SVM) and evaluates it from its arrays (the
vectorizer's own analyzer, a dictionary lookup and one small dot product per fold) instead of
scikit-learn's ``transform`` + per-fold ``predict_proba``: same probabilities, ~20x faster on
one short text, which is what a streaming guard scores. The guard scores a sliding window of the
output, so each call costs the same however long the answer grows. Offline scoring of eval
samples lives in ``llmloop.evaluators.toxicity``; this module does not aggregate rates.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Literal, Protocol

from pydantic import Field

from llmloop.core.chat import ChatMessage
from llmloop.core.guards import GuardStage, GuardVerdict
from llmloop.errors import InvalidInputError, MissingExtraError
from llmloop.guards.base import Guard, GuardConfig

#: Threshold with the best F1 on the ``calib`` split of ``toxicity_labelled.jsonl``
#: (``calibrate_threshold``); the test suite re-derives it and fails if it drifts.
DEFAULT_TOXICITY_THRESHOLD = 0.62


class ToxicityClassifier(Protocol):
    """Anything that scores texts for toxicity, 0 (clean) to 1 (toxic)."""

    def scores(self, texts: Sequence[str]) -> list[float]:
        """One probability-like score per text."""
        ...


_LOCK = threading.Lock()
_MODEL: _LinearModel | None = None


class _LinearModel:
    """alt-profanity-check's model as plain arrays: analyzer, vocabulary, idf, fold weights."""

    def __init__(self, vectorizer: Any, model: Any) -> None:
        import numpy as np

        if vectorizer.sublinear_tf or vectorizer.norm != "l2" or not vectorizer.use_idf:
            raise InvalidInputError("unexpected alt-profanity-check vectorizer settings")
        self.analyzer = vectorizer.build_analyzer()
        self.vocabulary: dict[str, int] = dict(vectorizer.vocabulary_)
        self.idf = np.asarray(vectorizer.idf_, dtype=np.float64)
        folds = model.calibrated_classifiers_
        self.weights = np.vstack([f.estimator.coef_.ravel() for f in folds]).T
        self.intercepts = np.array([float(f.estimator.intercept_[0]) for f in folds])
        self.sigmoid = np.array([[f.calibrators[0].a_, f.calibrators[0].b_] for f in folds])

    def score(self, text: str) -> float:
        """TF-IDF (l2) . fold weights, each fold's sigmoid, averaged: predict_proba exactly."""
        import numpy as np

        counts: dict[int, int] = {}
        for token in self.analyzer(text):
            index = self.vocabulary.get(token)
            if index is not None:
                counts[index] = counts.get(index, 0) + 1
        decision = self.intercepts
        if counts:
            idx = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
            vals = np.fromiter(counts.values(), dtype=np.float64, count=len(counts)) * self.idf[idx]
            vals /= np.sqrt(vals @ vals)
            decision = vals @ self.weights[idx] + self.intercepts
        probs = 1.0 / (1.0 + np.exp(self.sigmoid[:, 0] * decision + self.sigmoid[:, 1]))
        return float(probs.mean())


def _load_profanity_model() -> _LinearModel:
    """Load the alt-profanity-check vectorizer and model once per process."""
    global _MODEL
    with _LOCK:
        if _MODEL is None:
            try:
                import warnings
                from importlib import resources

                import joblib

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # pickled with an older scikit-learn
                    data = resources.files("profanity_check") / "data"
                    vectorizer = joblib.load(str(data / "vectorizer.joblib"))
                    model = joblib.load(str(data / "model.joblib"))
            except ImportError as exc:
                raise MissingExtraError("eval", "the toxicity classifier") from exc
            _MODEL = _LinearModel(vectorizer, model)
    return _MODEL


class ProfanityCheckClassifier:
    """The ``alt-profanity-check`` model, scored as the mean of its calibrated folds."""

    def scores(self, texts: Sequence[str]) -> list[float]:
        model = _load_profanity_model()
        return [model.score(text) for text in texts]


class ToxicityConfig(GuardConfig):
    threshold: float = Field(
        default=DEFAULT_TOXICITY_THRESHOLD,
        ge=0.0,
        le=1.0,
        description="Score at or above which text counts as toxic (calibrated on the shipped set).",
    )
    action: Literal["block", "flag"] = Field(default="block", description="What a hit does.")
    window_chars: int = Field(
        default=400, ge=32, le=20_000, description="Trailing output characters scored per call."
    )
    check_input: bool = Field(default=False, description="Also score the last user message.")
    check_output: bool = Field(default=True, description="Score the generated text.")


class ToxicityGuard(Guard):
    """Blocks or flags toxic output (incrementally, on a sliding window) and optionally input."""

    name = "toxicity"
    config_cls = ToxicityConfig
    config: ToxicityConfig

    def __init__(
        self, config: ToxicityConfig | None = None, classifier: ToxicityClassifier | None = None
    ) -> None:
        super().__init__(config)
        self.classifier: ToxicityClassifier = classifier or ProfanityCheckClassifier()
        self.window_chars = self.config.window_chars

    def _verdict(self, text: str, stage: GuardStage) -> list[GuardVerdict]:
        if not text.strip():
            return []
        score = self.classifier.scores([text])[0]
        if score < self.config.threshold:
            return []
        return [
            GuardVerdict(
                guard=self.name,
                rule_id=f"toxicity.{stage}",
                action=self.config.action,
                stage=stage,
                reason=f"toxicity score {score:.2f} >= {self.config.threshold:.2f}",
                score=score,
            )
        ]

    def check_input(self, messages: list[ChatMessage]) -> list[GuardVerdict]:
        if not self.config.check_input:
            return []
        users = [m.content for m in messages if m.role == "user"]
        return self._verdict(users[-1][-self.config.window_chars :], "input") if users else []

    def check_output(self, text: str, final: bool) -> list[GuardVerdict]:
        if not self.config.check_output:
            return []
        if not final:
            # A partial word ("Rat" of "Rates") can score as something else entirely; it is
            # held back (hold_from) and judged once complete.
            text = text[: self.hold_from(text)]
        return self._verdict(text[-self.config.window_chars :], "output")

    def hold_from(self, text: str) -> int:
        """Hold back the trailing partial word (it cannot be scored until complete), at most 48
        characters: longer runs are not words the classifier knows."""
        cut = max(text.rfind(" "), text.rfind("\n"), text.rfind("\t"))
        return max(cut + 1, len(text) - 48)


def check_scores(scores: Sequence[float], n: int) -> None:
    """Refuse a classifier answer of the wrong length or out of range (a broken plug-in)."""
    if len(scores) != n or any(not 0.0 <= s <= 1.0 for s in scores):
        raise InvalidInputError("a toxicity classifier must return one score in 0..1 per text")
