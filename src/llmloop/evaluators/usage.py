"""Operational metrics per sample: latency, token counts and cost, read from sample metadata.

One concept: what each answer cost to produce. The suite runner (or any caller) records
``latency_s``, ``prompt_tokens``, ``completion_tokens`` and optionally ``cost_usd`` in each
sample's metadata; this evaluator aggregates them (mean, percentiles, totals). When no cost is
recorded it prices tokens with the configured per-million rates. It measures nothing itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from pydantic import Field

from llmloop.core.evals import EvalResult, EvalSample, SampleScore
from llmloop.errors import InvalidInputError
from llmloop.evaluators.base import Evaluator, EvaluatorConfig

LATENCY_KEY = "latency_s"
PROMPT_TOKENS_KEY = "prompt_tokens"
COMPLETION_TOKENS_KEY = "completion_tokens"
COST_KEY = "cost_usd"


class UsageConfig(EvaluatorConfig):
    """Where to read usage in sample metadata, and how to price tokens."""

    prompt_price_per_million: float = Field(
        default=0.0, ge=0.0, description="USD per million prompt tokens (when no cost_usd)."
    )
    completion_price_per_million: float = Field(
        default=0.0, ge=0.0, description="USD per million completion tokens (when no cost_usd)."
    )
    percentiles: list[float] = Field(
        default_factory=lambda: [50.0, 95.0, 99.0],
        description="Latency percentiles to report (0-100).",
    )
    require_latency: bool = Field(
        default=True, description="Refuse samples without a latency_s value in metadata."
    )


def _number(sample: EvalSample, key: str, default: float | None) -> float | None:
    value = sample.metadata.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInputError(
            f"usage: sample '{sample.id}' metadata '{key}' must be a number, got {value!r}"
        )
    if value < 0:
        raise InvalidInputError(f"usage: sample '{sample.id}' metadata '{key}' is negative")
    return float(value)


class UsageEvaluator(Evaluator):
    """Latency (mean, percentiles), tokens (mean, total) and cost (mean, total) over samples."""

    name: ClassVar[str] = "usage"
    config_cls: ClassVar[type[EvaluatorConfig]] = UsageConfig
    config: UsageConfig

    def _sample_scores(self, sample: EvalSample) -> dict[str, float]:
        cfg = self.config
        latency = _number(sample, LATENCY_KEY, None)
        if latency is None and cfg.require_latency:
            raise InvalidInputError(f"usage: sample '{sample.id}' has no '{LATENCY_KEY}' metadata")
        prompt = _number(sample, PROMPT_TOKENS_KEY, 0.0) or 0.0
        completion = _number(sample, COMPLETION_TOKENS_KEY, 0.0) or 0.0
        cost = _number(sample, COST_KEY, None)
        if cost is None:
            cost = (
                prompt * cfg.prompt_price_per_million
                + completion * cfg.completion_price_per_million
            ) / 1e6
        scores = {
            PROMPT_TOKENS_KEY: prompt,
            COMPLETION_TOKENS_KEY: completion,
            "total_tokens": prompt + completion,
            COST_KEY: cost,
        }
        if latency is not None:
            scores[LATENCY_KEY] = latency
        return scores

    async def evaluate(self, samples: Sequence[EvalSample]) -> EvalResult:
        import numpy as np

        if not samples:
            raise InvalidInputError("usage: no samples to score")
        if any(not 0.0 <= p <= 100.0 for p in self.config.percentiles):
            raise InvalidInputError("usage: percentiles must lie in 0-100")
        per = [SampleScore(sample_id=s.id, scores=self._sample_scores(s)) for s in samples]
        agg: dict[str, float] = {}
        for key in (PROMPT_TOKENS_KEY, COMPLETION_TOKENS_KEY, "total_tokens", COST_KEY):
            values = np.asarray([p.scores[key] for p in per])
            agg[f"{key}_mean"] = float(values.mean())
            agg[f"{key}_total"] = float(values.sum())
        latencies = np.asarray([p.scores[LATENCY_KEY] for p in per if LATENCY_KEY in p.scores])
        if latencies.size:
            agg["latency_mean_s"] = float(latencies.mean())
            agg["latency_max_s"] = float(latencies.max())
            for pct in self.config.percentiles:
                agg[f"latency_p{pct:g}_s"] = float(np.percentile(latencies, pct))
            total_latency = float(latencies.sum())
            if total_latency > 0:
                agg["completion_tokens_per_s"] = agg["completion_tokens_total"] / total_latency
        return EvalResult(evaluator=self.name, aggregate=agg, samples=per, details={"n": len(per)})


__all__ = [
    "COMPLETION_TOKENS_KEY",
    "COST_KEY",
    "LATENCY_KEY",
    "PROMPT_TOKENS_KEY",
    "UsageConfig",
    "UsageEvaluator",
]
