"""Drift values: the result of comparing a reference window with a current window."""

from __future__ import annotations

from pydantic import Field

from llmloop.core.base import JsonDict, Value


class DriftTestResult(Value):
    """One two-sample test: is the current window drawn from the reference distribution?"""

    metric: str = Field(description="What was compared, e.g. 'input_embedding', 'output_length'.")
    test: str = Field(description="The statistical test used (mmd, ks, two_proportion, ...).")
    statistic: float
    p_value: float = Field(ge=0.0, le=1.0)
    drifted: bool = Field(description="p_value < alpha.")
    alpha: float
    reference_n: int
    current_n: int
    details: JsonDict = Field(default_factory=dict)
