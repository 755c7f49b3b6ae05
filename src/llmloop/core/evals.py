"""Evaluation values: a sample to score, per-sample scores, and an evaluator's aggregate result."""

from __future__ import annotations

from pydantic import Field

from llmloop.core.base import JsonDict, Value


class EvalSample(Value):
    """One item: what was asked, what the model said, and what it should have said or relied on."""

    id: str = ""
    input: str = Field(default="", description="The prompt or last user turn.")
    output: str = Field(default="", description="The model's answer.")
    reference: str | None = Field(default=None, description="Reference answer, when known.")
    references: list[str] | None = Field(default=None, description="Several references.")
    context: str | None = Field(default=None, description="Retrieved or given context.")
    metadata: JsonDict = Field(default_factory=dict)


class SampleScore(Value):
    sample_id: str
    scores: dict[str, float]
    details: JsonDict = Field(default_factory=dict)


class EvalResult(Value):
    """What one evaluator found: aggregates (the gate reads these) and per-sample scores."""

    evaluator: str
    aggregate: dict[str, float]
    samples: list[SampleScore] = Field(default_factory=list)
    details: JsonDict = Field(default_factory=dict)
