"""Confidence intervals, paired bootstrap and judge-human agreement."""

from __future__ import annotations

import math

import pytest
from scipy import stats as scipy_stats

from llmloop.errors import InvalidInputError
from llmloop.evaluators.stats import (
    Interval,
    agreement,
    mean_interval,
    paired_bootstrap,
    straddles,
)


def test_t_interval_matches_scipy() -> None:
    values = [2.0, 4.0, 4.0, 5.0, 7.0]
    got = mean_interval(values, confidence=0.9)
    low, high = scipy_stats.t.interval(0.9, 4, loc=4.4, scale=scipy_stats.sem(values))
    assert (got.mean, got.n) == (pytest.approx(4.4), 5)
    assert got.low == pytest.approx(low)
    assert got.high == pytest.approx(high)


def test_bootstrap_interval_contains_mean_and_is_seeded() -> None:
    values = [float(x % 7) for x in range(40)]
    a = mean_interval(values, method="bootstrap", seed=3)
    b = mean_interval(values, method="bootstrap", seed=3)
    assert a == b
    assert a.low < a.mean < a.high


def test_degenerate_intervals_have_zero_width() -> None:
    assert mean_interval([3.0]).low == mean_interval([3.0]).high == 3.0
    flat = mean_interval([2.0, 2.0, 2.0])
    assert (flat.low, flat.high) == (2.0, 2.0)


@pytest.mark.parametrize("values", [[], [1.0, math.nan], [math.inf]], ids=["empty", "nan", "inf"])
def test_interval_refuses_bad_values(values: list[float]) -> None:
    with pytest.raises(InvalidInputError):
        mean_interval(values)


def test_interval_refuses_bad_confidence_and_method() -> None:
    with pytest.raises(InvalidInputError, match="confidence"):
        mean_interval([1.0, 2.0], confidence=1.5)
    with pytest.raises(InvalidInputError, match="method"):
        mean_interval([1.0, 2.0], method="magic")  # type: ignore[arg-type]


def test_straddles() -> None:
    interval = Interval(mean=3.0, low=2.0, high=4.0, n=4, confidence=0.95, method="t")
    assert straddles(interval, 3.5)
    assert not straddles(interval, 4.5)
    point = Interval(mean=3.0, low=3.0, high=3.0, n=1, confidence=0.95, method="t")
    assert not straddles(point, 3.0)


def test_paired_bootstrap_detects_a_consistent_drop() -> None:
    base = [0.5 + 0.01 * (i % 10) for i in range(60)]
    worse = [b - 0.1 + 0.005 * (i % 3) for i, b in enumerate(base)]
    test = paired_bootstrap(worse, base, seed=1)
    assert test.delta == pytest.approx(-0.095, abs=1e-3)
    assert test.high < 0
    assert test.p_worse > 0.99
    same = paired_bootstrap(base, base)
    assert (same.delta, same.low, same.high, same.p_worse) == (0.0, 0.0, 0.0, 0.0)


def test_paired_bootstrap_noise_is_not_significant() -> None:
    base = [float(i % 2) for i in range(30)]
    cand = [float((i + 1) % 2) if i % 5 == 0 else float(i % 2) for i in range(30)]
    test = paired_bootstrap(cand, base, seed=0)
    assert test.low < 0 < test.high


def test_paired_bootstrap_refuses_unpaired_lengths() -> None:
    with pytest.raises(InvalidInputError, match="3 candidate scores but 2"):
        paired_bootstrap([1.0, 2.0, 3.0], [1.0, 2.0])


def test_agreement_kappa_and_spearman() -> None:
    judge = [1, 2, 3, 4, 5, 5]
    human = [1, 2, 3, 4, 4, 5]
    result = agreement(judge, human)
    from sklearn.metrics import cohen_kappa_score

    assert result.cohen_kappa == pytest.approx(
        cohen_kappa_score([str(x) for x in judge], [str(x) for x in human])
    )
    assert result.spearman == pytest.approx(scipy_stats.spearmanr(judge, human).statistic)
    assert result.n == 6
    labels = agreement(["A", "B", "tie"], ["A", "B", "tie"], "categorical")
    assert labels.cohen_kappa == pytest.approx(1.0)
    assert labels.spearman is None


def test_agreement_undefined_and_bad_input() -> None:
    constant = agreement([3, 3, 3], [1, 2, 3], "scores")
    assert constant.spearman is None
    with pytest.raises(InvalidInputError, match="2 judge labels but 3"):
        agreement([1, 2], [1, 2, 3])
    with pytest.raises(InvalidInputError, match="numeric"):
        agreement(["A", "B"], ["A", "B"], "scores")
