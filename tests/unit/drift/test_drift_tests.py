"""Drift tests find a shifted window and stay quiet on a same-distribution one; the false-positive
rate over repeated seeds stays near alpha."""

from __future__ import annotations

import numpy as np
import pytest

from llmloop.drift.tests import ks_test, mmd_test, proportion_test
from llmloop.errors import InvalidInputError


def test_mmd_detects_a_shift() -> None:
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(120, 8))
    shifted = rng.normal(loc=0.6, size=(120, 8))
    result = mmd_test(ref, shifted, permutations=200)
    assert result.drifted and result.p_value < 0.01


def test_mmd_false_positive_rate_is_near_alpha() -> None:
    fired = 0
    trials = 40
    for seed in range(trials):
        rng = np.random.default_rng(100 + seed)
        ref, cur = rng.normal(size=(60, 8)), rng.normal(size=(60, 8))
        fired += mmd_test(ref, cur, permutations=100, seed=seed).drifted
    rate = fired / trials
    assert rate <= 0.15, f"false-positive rate {rate:.2f} at alpha 0.05"


def test_ks_and_proportions() -> None:
    rng = np.random.default_rng(2)
    same = ks_test(rng.poisson(40, 200), rng.poisson(40, 200), "output_length")
    longer = ks_test(rng.poisson(40, 200), rng.poisson(55, 200), "output_length")
    assert not same.drifted and longer.drifted
    assert proportion_test(5, 500, 40, 500, "toxicity_rate").drifted
    assert not proportion_test(20, 500, 22, 500, "toxicity_rate").drifted


def test_bad_windows_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="at least"):
        mmd_test(np.zeros((2, 3)), np.zeros((10, 3)))
    with pytest.raises(InvalidInputError, match="same width"):
        mmd_test(np.zeros((10, 3)), np.zeros((10, 4)))
    with pytest.raises(InvalidInputError, match="hits"):
        proportion_test(9, 5, 1, 5, "x")
