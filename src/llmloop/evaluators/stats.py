"""Statistics for evaluation: confidence intervals, paired bootstrap tests and rater agreement.

One concept: how sure we are about a score. Judges use :func:`mean_interval` for per-item and
aggregate intervals and :func:`straddles` to flag verdicts that could go either way; the
regression gate uses :func:`paired_bootstrap`; :func:`agreement` compares a judge with human
labels. Everything is computed with scipy, numpy and scikit-learn; nothing here knows about
samples, engines or reports.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from llmloop.errors import InvalidInputError

IntervalMethod = Literal["t", "bootstrap"]


class Interval(BaseModel):
    """A mean with a two-sided confidence interval over ``n`` values."""

    model_config = ConfigDict(frozen=True)

    mean: float = Field(description="The sample mean.")
    low: float = Field(description="Lower bound of the confidence interval.")
    high: float = Field(description="Upper bound of the confidence interval.")
    n: int = Field(ge=0, description="How many values the interval is computed from.")
    confidence: float = Field(gt=0.0, lt=1.0, description="Confidence level, e.g. 0.95.")
    method: IntervalMethod = Field(description="'t' (Student t) or 'bootstrap' (BCa/percentile).")


class PairedTest(BaseModel):
    """A paired bootstrap comparison of candidate vs baseline per-item scores."""

    model_config = ConfigDict(frozen=True)

    delta: float = Field(description="Mean of candidate - baseline over the paired items.")
    low: float = Field(description="Lower bound of the confidence interval of ``delta``.")
    high: float = Field(description="Upper bound of the confidence interval of ``delta``.")
    p_worse: float = Field(
        description="Share of bootstrap resamples where the candidate mean is below the baseline "
        "(an approximate one-sided p-value for 'the candidate is not worse')."
    )
    n: int = Field(ge=0, description="Number of paired items.")
    confidence: float = Field(gt=0.0, lt=1.0, description="Confidence level of the interval.")


class Agreement(BaseModel):
    """How well a judge agrees with human labels on the same items."""

    model_config = ConfigDict(frozen=True)

    n: int = Field(ge=0, description="Items with both a judge and a human label.")
    cohen_kappa: float | None = Field(
        default=None, description="Cohen's kappa on categorical labels (None if undefined)."
    )
    spearman: float | None = Field(
        default=None, description="Spearman rank correlation on scores (None if undefined)."
    )
    spearman_p: float | None = Field(default=None, description="p-value of the Spearman test.")


def _as_floats(values: Sequence[float], what: str) -> list[float]:
    out = [float(v) for v in values]
    if not out:
        raise InvalidInputError(f"{what}: need at least one value")
    if any(math.isnan(v) or math.isinf(v) for v in out):
        raise InvalidInputError(f"{what}: values must be finite numbers")
    return out


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise InvalidInputError(f"confidence must be between 0 and 1, got {confidence}")


def mean_interval(
    values: Sequence[float],
    confidence: float = 0.95,
    method: IntervalMethod = "t",
    n_resamples: int = 2000,
    seed: int = 0,
) -> Interval:
    """The mean of ``values`` with a confidence interval (Student t or bootstrap).

    One value, or values that are all equal, give a zero-width interval at the mean: there is
    no spread to estimate, which callers should read together with ``n``.
    """
    import numpy as np
    from scipy import stats

    _check_confidence(confidence)
    data = np.asarray(_as_floats(values, "mean_interval"))
    mean = float(data.mean())
    if data.size < 2 or float(data.std()) == 0.0:
        return Interval(
            mean=mean, low=mean, high=mean, n=int(data.size), confidence=confidence, method=method
        )
    if method == "t":
        low, high = stats.t.interval(
            confidence, df=data.size - 1, loc=mean, scale=float(stats.sem(data))
        )
    elif method == "bootstrap":
        res = stats.bootstrap(
            (data,),
            np.mean,
            confidence_level=confidence,
            n_resamples=n_resamples,
            method="percentile",
            rng=np.random.default_rng(seed),
        )
        low, high = res.confidence_interval.low, res.confidence_interval.high
    else:
        raise InvalidInputError(f"unknown interval method '{method}'; use 't' or 'bootstrap'")
    return Interval(
        mean=mean,
        low=float(low),
        high=float(high),
        n=int(data.size),
        confidence=confidence,
        method=method,
    )


def straddles(interval: Interval, threshold: float) -> bool:
    """True when the interval contains ``threshold`` strictly inside: the verdict is uncertain."""
    return interval.low < threshold < interval.high or (
        interval.low != interval.high and threshold in (interval.low, interval.high)
    )


def paired_bootstrap(
    candidate: Sequence[float],
    baseline: Sequence[float],
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> PairedTest:
    """Resample items with replacement and compare the candidate and baseline means.

    ``candidate[i]`` and ``baseline[i]`` must score the same item. The interval is the percentile
    interval of the resampled mean differences (scipy ``bootstrap`` with ``paired=True``).
    """
    import numpy as np
    from scipy import stats

    _check_confidence(confidence)
    cand = np.asarray(_as_floats(candidate, "paired_bootstrap candidate"))
    base = np.asarray(_as_floats(baseline, "paired_bootstrap baseline"))
    if cand.shape != base.shape:
        raise InvalidInputError(
            f"paired_bootstrap: {cand.size} candidate scores but {base.size} baseline scores"
        )
    diff = cand - base
    delta = float(diff.mean())
    if diff.size < 2 or float(diff.std()) == 0.0:
        p_worse = 1.0 if delta < 0 else 0.0
        return PairedTest(
            delta=delta, low=delta, high=delta, p_worse=p_worse, n=int(diff.size),
            confidence=confidence,
        )  # fmt: skip
    res = stats.bootstrap(
        (cand, base),
        lambda a, b, axis=-1: np.mean(a - b, axis=axis),
        paired=True,
        vectorized=True,
        confidence_level=confidence,
        n_resamples=n_resamples,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    dist = np.asarray(res.bootstrap_distribution)
    return PairedTest(
        delta=delta,
        low=float(res.confidence_interval.low),
        high=float(res.confidence_interval.high),
        p_worse=float(np.mean(dist < 0.0)),
        n=int(diff.size),
        confidence=confidence,
    )


def agreement(
    judge: Sequence[float | str],
    human: Sequence[float | str],
    kind: Literal["categorical", "scores", "both"] = "both",
) -> Agreement:
    """Cohen's kappa (categorical labels) and/or Spearman's rho (scores) of judge vs human.

    Undefined statistics (a constant rater, fewer than two items) are reported as None rather
    than NaN so that the result stays JSON-clean.
    """
    if len(judge) != len(human):
        raise InvalidInputError(f"agreement: {len(judge)} judge labels but {len(human)} human")
    n = len(judge)
    kappa = rho = rho_p = None
    if n >= 2 and kind in ("categorical", "both"):
        from sklearn.metrics import cohen_kappa_score

        value = float(cohen_kappa_score([str(x) for x in judge], [str(x) for x in human]))
        kappa = None if math.isnan(value) else value
    if n >= 2 and kind in ("scores", "both"):
        import numpy as np
        from scipy import stats

        try:
            a = np.asarray([float(x) for x in judge])
            b = np.asarray([float(x) for x in human])
        except ValueError:
            raise InvalidInputError("agreement: Spearman needs numeric labels")
        if float(a.std()) > 0 and float(b.std()) > 0:
            res = stats.spearmanr(a, b)
            rho, rho_p = float(res.statistic), float(res.pvalue)
    return Agreement(n=n, cohen_kappa=kappa, spearman=rho, spearman_p=rho_p)


__all__ = [
    "Agreement",
    "Interval",
    "IntervalMethod",
    "PairedTest",
    "agreement",
    "mean_interval",
    "paired_bootstrap",
    "straddles",
]
