"""Prompt-injection detection: named heuristics plus a small TF-IDF + logistic-regression model.

The detector checks user turns and retrieved/tool content (indirect injection) for attempts to
override the system's instructions, switch the model into an unrestricted persona, extract the
system prompt, or smuggle fake conversation turns, including payloads hidden in base64. The
classifier is trained at first use on the shipped ``injection_labelled.jsonl`` (about a second on
one core) and cached for the life of the process; ``injection_eval.jsonl`` is held out for the
figures in ``docs/safety.md``. Output-side checks are elsewhere; this module only reads input.
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

from llmloop.core.chat import ChatMessage, Role
from llmloop.core.guards import GuardVerdict
from llmloop.guards.base import Guard, GuardConfig
from llmloop.guards.safety_data import read_labelled, safety_path

_OVERRIDE_VERB = r"(ignore|disregard|forget|override|skip|throw away|do not follow|don't follow)"
_OVERRIDE_OBJECT = (
    r"(all |any |the |your |my )?(previous|prior|above|earlier|preceding|system|original|initial)"
    r"( \w+)?( \w+)? (instructions?|rules|guidance|prompts?|directions|guidelines)"
    r"|everything (you were|you've been|i) told"
)
HEURISTICS: dict[str, re.Pattern[str]] = {
    "injection.override": re.compile(rf"\b{_OVERRIDE_VERB}\b.{{0,20}}({_OVERRIDE_OBJECT})", re.I),
    "injection.roleplay": re.compile(
        r"\b(you are now|act as|pretend (to be|you are)|from now on you)\b.{0,60}"
        r"\b(DAN|unfiltered|unrestricted|jailbr\w+|evil|"
        r"(no|without (any )?)(rules|restrictions|limits|filters))"
        r"|\b(developer|jailbreak|god) mode\b|\bdo anything now\b",
        re.I,
    ),
    "injection.prompt_extraction": re.compile(
        r"\b(reveal|print|show|output|repeat|dump|leak|tell me)\b.{0,30}"
        r"\b(system prompt|hidden (prompt|instructions)|initial instructions|"
        r"confidential instructions|the (text|words) above)",
        re.I,
    ),
    "injection.fake_turn": re.compile(
        r"(<\|im_start\|>|<\|system\|>|\[/?INST\]|^\s*#{2,}\s*system\b|\[(assistant|system)\]|"
        r"</(context|document|data)>|^\s*system\s*(override)?\s*[:\-])",
        re.I | re.M,
    ),
}
_BASE64_BLOB = re.compile(r"[A-Za-z0-9+/]{24,}={0,2}")


@dataclass(frozen=True)
class InjectionFinding:
    """What the detector concluded about one text: a 0..1 score and the rule behind it."""

    score: float
    rule_id: str
    reason: str


_LOCK = threading.Lock()
_CLASSIFIERS: dict[str, _TfidfLogit] = {}


class _TfidfLogit:
    """A fitted TF-IDF + logistic regression, scored from its arrays (no per-call overhead).

    scikit-learn's ``predict_proba`` on one short text spends ~1 ms validating and building
    sparse matrices; the same arithmetic on a dict of token counts takes ~50 us. ``pipeline``
    stays available and the tests check both give the same probabilities.
    """

    def __init__(self, pipeline: Any) -> None:
        import numpy as np

        vectorizer, model = pipeline[0], pipeline[-1]
        self.pipeline = pipeline
        self.analyzer = vectorizer.build_analyzer()
        self.vocabulary: dict[str, int] = dict(vectorizer.vocabulary_)
        self.idf = np.asarray(vectorizer.idf_, dtype=np.float64)
        self.coef = np.asarray(model.coef_[0], dtype=np.float64)
        self.intercept = float(model.intercept_[0])

    def probability(self, text: str) -> float:
        import numpy as np

        counts: dict[int, int] = {}
        for token in self.analyzer(text):
            index = self.vocabulary.get(token)
            if index is not None:
                counts[index] = counts.get(index, 0) + 1
        logit = self.intercept
        if counts:
            idx = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
            tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
            vals = (1.0 + np.log(tf)) * self.idf[idx]  # sublinear tf, then l2 norm
            logit += float(vals @ self.coef[idx]) / float(np.sqrt(vals @ vals))
        return 1.0 / (1.0 + float(np.exp(-logit)))


def _classifier(train_file: str) -> _TfidfLogit:
    """The classifier trained on ``train_file``, once per process."""
    with _LOCK:
        if train_file not in _CLASSIFIERS:
            from sklearn.feature_extraction.text import TfidfVectorizer
            from sklearn.linear_model import LogisticRegression
            from sklearn.pipeline import make_pipeline

            texts, labels = read_labelled(safety_path(train_file))
            # Word 1-2 grams only: character n-grams cost 2x per call for no held-out gain.
            pipeline = make_pipeline(
                TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
                LogisticRegression(C=4.0, max_iter=2000, class_weight="balanced"),
            )
            pipeline.fit(texts, labels)
            _CLASSIFIERS[train_file] = _TfidfLogit(pipeline)
    return _CLASSIFIERS[train_file]


def _decoded_blobs(text: str) -> list[str]:
    """Printable decodings of base64-looking runs (payloads hidden from the other rules)."""
    out = []
    for blob in _BASE64_BLOB.findall(text)[:8]:
        try:
            raw = base64.b64decode(blob + "=" * (-len(blob) % 4), validate=True)
            decoded = raw.decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            continue
        if decoded.isprintable():
            out.append(decoded)
    return out


class InjectionConfig(GuardConfig):
    threshold: float = Field(
        default=0.5, ge=0.0, le=1.0, description="Classifier probability that counts as injection."
    )
    use_heuristics: bool = Field(default=True, description="Apply the named regex rules.")
    use_classifier: bool = Field(default=True, description="Apply the TF-IDF classifier.")
    train_file: str = Field(
        default="injection_labelled.jsonl",
        description="Shipped labelled set (resources/safety) the classifier is trained on.",
    )
    roles: list[Role] = Field(
        default_factory=lambda: list[Role](["user", "tool"]),
        description="Message roles to inspect; 'tool' carries retrieved (indirect) content.",
    )
    max_chars: int = Field(
        default=4000, ge=100, description="Characters per message inspected (head and tail)."
    )
    action: Literal["block", "flag"] = Field(default="block", description="What a hit does.")


class InjectionDetector:
    """Scores one text for prompt injection (heuristics first, then the classifier)."""

    def __init__(self, config: InjectionConfig | None = None) -> None:
        self.config = config or InjectionConfig()

    def _clip(self, text: str) -> str:
        half = self.config.max_chars // 2
        return text if len(text) <= self.config.max_chars else text[:half] + "\n" + text[-half:]

    def find(self, text: str) -> InjectionFinding | None:
        """The strongest finding in ``text``, or None when it looks clean."""
        text = self._clip(text)
        if self.config.use_heuristics:
            for candidate, how in [(text, "")] + [(d, " (base64)") for d in _decoded_blobs(text)]:
                for rule_id, pattern in HEURISTICS.items():
                    if m := pattern.search(candidate):
                        return InjectionFinding(1.0, rule_id, f"matched '{m.group(0)[:60]}'{how}")
        if self.config.use_classifier:
            score = self.score(text)
            if score >= self.config.threshold:
                return InjectionFinding(score, "injection.classifier", f"classifier {score:.2f}")
        return None

    def score(self, text: str) -> float:
        """The classifier's probability that ``text`` is an injection attempt."""
        return _classifier(self.config.train_file).probability(self._clip(text))


class InjectionGuard(Guard):
    """Input guard: blocks or flags messages that try to hijack the model's instructions."""

    name = "injection"
    config_cls = InjectionConfig
    config: InjectionConfig

    def __init__(self, config: InjectionConfig | None = None) -> None:
        super().__init__(config)
        self.detector = InjectionDetector(self.config)

    def check_input(self, messages: list[ChatMessage]) -> list[GuardVerdict]:
        for index, message in enumerate(messages):
            if message.role not in self.config.roles:
                continue
            finding = self.detector.find(message.content)
            if finding is not None:
                return [
                    GuardVerdict(
                        guard=self.name,
                        rule_id=finding.rule_id,
                        action=self.config.action,
                        stage="input",
                        reason=f"message {index} ({message.role}): {finding.reason}",
                        score=finding.score,
                    )
                ]
        return []
