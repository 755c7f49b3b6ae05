"""Faithfulness: is each claim of an answer supported by the given context or reference answer?

The answer is split into claims (sentences, and long sentences into clauses); each claim gets a
support score in 0..1 from (a) MiniLM embedding similarity with its best-matching evidence
sentence, (b) lexical recall of its content words in the evidence, with a penalty for numbers
that appear nowhere in the evidence, and (c) optionally a judge callable
(``engine_claim_judge(engine)`` asks any Engine; or any ``async (claim, evidence) -> 0..1``).
Claims under the threshold are listed as unsupported. It does not check facts against the
world, only against the evidence.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar, Literal

from pydantic import Field

from llmloop.core.chat import ChatMessage, GenerationRequest, SamplingParams
from llmloop.core.evals import EvalResult, EvalSample, SampleScore
from llmloop.engines.base import Engine
from llmloop.errors import InvalidInputError, LlmloopError
from llmloop.evaluators.base import Evaluator, EvaluatorConfig

#: ``async judge(claim, evidence) -> support in 0..1``.
ClaimJudge = Callable[[str, str], Awaitable[float]]

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])|\n+\s*(?:[-*•]|\d+[.)])?\s*")
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")
_CLAUSE = re.compile(r";\s+|,\s+(?:and|but|while|whereas|although|which)\s+|\s+but\s+")
_WORD = re.compile(r"[a-z0-9]+(?:[.,][0-9]+)?", re.I)
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
_STOP_WORDS = (
    "a an the and or but if of to in on at by for with from as is are was were be been being it "
    "its this that these those there here he she they we you i his her their our your my me him "
    "them us do does did has have had not no yes so than then too very can could will would "
    "shall should may might must also just about into over under up down out what which who "
    "whom whose when where why how all any each some such only own same other more most "
)
_STOP = frozenset(_STOP_WORDS.split())


def split_claims(text: str, min_words: int = 3) -> list[str]:
    """Sentences of ``text``, long ones cut into clauses; fragments under ``min_words`` go."""
    claims: list[str] = []
    for sentence in _SENTENCE.split(text.strip()):
        sentence = _BULLET.sub("", sentence).strip()
        if not sentence:
            continue
        parts = _CLAUSE.split(sentence) if len(sentence.split()) > 2 * min_words + 4 else [sentence]
        if any(len(p.split()) < min_words for p in parts):
            parts = [sentence]  # do not cut a sentence into orphan fragments
        claims += [p.strip(" ,;") for p in parts if len(_content(p)) >= 1]
    return [c for c in claims if len(c.split()) >= min_words]


def _content(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(text) if w.lower() not in _STOP}


def lexical_support(claim: str, evidence: str) -> float:
    """Share of the claim's content words found in the evidence, halved if it adds numbers."""
    words = _content(claim)
    if not words:
        return 1.0
    found = _content(evidence)
    score = len(words & found) / len(words)
    if set(_NUMBER.findall(claim)) - set(_NUMBER.findall(evidence)):
        score *= 0.5
    return score


CLAIM_JUDGE_PROMPT = """You check whether a claim is supported by the evidence.

Evidence:
<<<
{evidence}
>>>

Claim: {claim}

Is every part of the claim stated or directly implied by the evidence? Reply with
"Score: 1" if it is supported and "Score: 0" if it is not (or only partly) supported."""


def engine_claim_judge(engine: Engine, *, model: str = "", max_tokens: int = 64) -> ClaimJudge:
    """A ``ClaimJudge`` asking ``engine`` at temperature 0; unparsable or failed answers: 0.5."""
    from llmloop.evaluators.judges import parse_score

    async def judge(claim: str, evidence: str) -> float:
        prompt = CLAIM_JUDGE_PROMPT.format(evidence=evidence, claim=claim)
        req = GenerationRequest(
            model=model or engine.spec.model,
            messages=[ChatMessage(role="user", content=prompt)],
            sampling=SamplingParams(max_tokens=max_tokens, temperature=0.0),
        )
        try:
            text = (await engine.chat(req)).text
        except LlmloopError:
            return 0.5
        score = parse_score(text, 0.0, 1.0)
        return 0.5 if score is None else score

    return judge


class FaithfulnessConfig(EvaluatorConfig):
    against: Literal["context", "reference", "both"] = Field(
        default="both", description="Evidence: the sample's context, its reference(s), or both."
    )
    threshold: float = Field(
        default=0.55, ge=0.0, le=1.0, description="Support below which a claim is unsupported."
    )
    use_embeddings: bool = Field(
        default=True, description="Use MiniLM similarity (off: lexical support only)."
    )
    embedding_weight: float = Field(
        default=0.6, ge=0.0, le=1.0, description="Weight of embedding vs lexical support."
    )
    judge_weight: float = Field(
        default=0.5, ge=0.0, le=1.0, description="Weight of the judge's score when one is given."
    )
    min_claim_words: int = Field(default=3, ge=1, description="Shorter fragments are not claims.")
    model_path: str | None = Field(
        default=None, description="Local sentence-transformers directory; None: bundled MiniLM."
    )


class FaithfulnessEvaluator(Evaluator):
    """``faithfulness`` (mean supported share; higher is better) and ``hallucination_rate``."""

    name: ClassVar[str] = "faithfulness"
    config_cls = FaithfulnessConfig
    config: FaithfulnessConfig

    def __init__(
        self, config: FaithfulnessConfig | None = None, judge: ClaimJudge | None = None
    ) -> None:
        super().__init__(config)
        self.judge = judge

    def _evidence(self, sample: EvalSample) -> list[str]:
        sources: list[str] = []
        if self.config.against in ("context", "both") and sample.context:
            sources.append(sample.context)
        if self.config.against in ("reference", "both"):
            sources += [r for r in (sample.references or []) if r]
            if sample.reference:
                sources.append(sample.reference)
        if not sources:
            raise InvalidInputError(
                f"sample '{sample.id}' has no {self.config.against} to check the answer against"
            )
        return [s for text in sources for s in split_claims(text, 1)] or sources

    def _similarities(self, claims: list[str], evidence: list[str]) -> list[float]:
        """Best cosine of each claim with any evidence sentence (0 when embeddings are off)."""
        if not self.config.use_embeddings or not claims:
            return [0.0] * len(claims)
        from llmloop.evaluators.similarity import encode_normalized, load_embedder

        model: Any = load_embedder(self.config.model_path)
        vectors = encode_normalized(model, claims + evidence, batch_size=64)
        sims = vectors[: len(claims)] @ vectors[len(claims) :].T
        return [max(0.0, float(row.max())) for row in sims]

    async def score_answer(self, answer: str, evidence: list[str]) -> list[tuple[str, float]]:
        """Each claim of ``answer`` with its support score."""
        claims = split_claims(answer, self.config.min_claim_words)
        sims = await asyncio.to_thread(self._similarities, claims, evidence)
        joined = " ".join(evidence)
        scored = []
        for claim, sim in zip(claims, sims, strict=True):
            lexical = lexical_support(claim, joined)
            if self.config.use_embeddings:
                w = self.config.embedding_weight
                support = w * sim + (1 - w) * lexical
            else:
                support = lexical
            if self.judge is not None:
                verdict = min(1.0, max(0.0, float(await self.judge(claim, joined))))
                support = (
                    1 - self.config.judge_weight
                ) * support + self.config.judge_weight * verdict
            scored.append((claim, support))
        return scored

    async def evaluate(self, samples: Sequence[EvalSample]) -> EvalResult:
        if not samples:  # a 0.0 faithfulness with a 0.0 hallucination rate would contradict
            raise InvalidInputError("faithfulness: no samples to score")
        results: list[SampleScore] = []
        shares: list[float] = []
        for i, sample in enumerate(samples):
            scored = await self.score_answer(sample.output, self._evidence(sample))
            unsupported = [c for c, s in scored if s < self.config.threshold]
            share = 1.0 - len(unsupported) / len(scored) if scored else 1.0
            shares.append(share)
            results.append(
                SampleScore(
                    sample_id=sample.id or str(i),
                    scores={"faithfulness": share, "unsupported_claims": float(len(unsupported))},
                    details={
                        "unsupported": unsupported,
                        "claims": [{"claim": c, "support": round(s, 4)} for c, s in scored],
                    },
                )
            )
        n = len(shares)
        return EvalResult(
            evaluator=self.name,
            aggregate={
                "faithfulness": sum(shares) / n,
                "hallucination_rate": sum(1 for s in shares if s < 1.0) / n,
            },
            samples=results,
            details={"threshold": self.config.threshold, "judge": self.judge is not None},
        )
