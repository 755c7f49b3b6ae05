"""Two-sample drift tests: MMD with a permutation p-value for embeddings, Kolmogorov-Smirnov for
lengths and scores, a two-proportion z-test for rates (toxicity, refusals, thumbs-down).

Every test returns a :class:`DriftTestResult` with a p-value; the permutation test is seeded, so
results repeat. None of these embed text or read traces.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from llmloop.core.drift import DriftTestResult
from llmloop.errors import InvalidInputError

MIN_SAMPLES = 5


def _check_sizes(ref_n: int, cur_n: int, metric: str) -> None:
    if ref_n < MIN_SAMPLES or cur_n < MIN_SAMPLES:
        raise InvalidInputError(
            f"{metric}: need at least {MIN_SAMPLES} samples in each window "
            f"(reference {ref_n}, current {cur_n})"
        )


def _subsample(x: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    if len(x) <= limit:
        return x
    return x[rng.choice(len(x), size=limit, replace=False)]


def _sq_dists(z: np.ndarray) -> np.ndarray:
    norms = (z * z).sum(axis=1)
    d = norms[:, None] + norms[None, :] - 2.0 * (z @ z.T)
    return np.maximum(d, 0.0)


def _mmd2_from_kernel(k: np.ndarray, idx_x: np.ndarray, idx_y: np.ndarray) -> float:
    kxx = k[np.ix_(idx_x, idx_x)]
    kyy = k[np.ix_(idx_y, idx_y)]
    kxy = k[np.ix_(idx_x, idx_y)]
    m, n = len(idx_x), len(idx_y)
    sxx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    syy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(sxx + syy - 2.0 * kxy.mean())


def mmd_test(
    reference: Sequence[Sequence[float]] | np.ndarray,
    current: Sequence[Sequence[float]] | np.ndarray,
    metric: str = "input_embedding",
    alpha: float = 0.05,
    permutations: int = 300,
    max_samples: int = 500,
    seed: int = 0,
) -> DriftTestResult:
    """Unbiased MMD² with an RBF kernel (median-heuristic bandwidth) and a permutation p-value."""
    rng = np.random.default_rng(seed)
    x = np.asarray(reference, dtype=np.float64)
    y = np.asarray(current, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise InvalidInputError(f"{metric}: both windows must be 2-D arrays of the same width")
    _check_sizes(len(x), len(y), metric)
    x, y = _subsample(x, max_samples, rng), _subsample(y, max_samples, rng)
    z = np.vstack([x, y])
    d = _sq_dists(z)
    positive = d[d > 0]
    bandwidth = float(np.median(positive)) if positive.size else 1.0
    k = np.exp(-d / bandwidth)
    m = len(x)
    all_idx = np.arange(len(z))
    observed = _mmd2_from_kernel(k, all_idx[:m], all_idx[m:])
    exceed = 0
    for _ in range(permutations):
        perm = rng.permutation(len(z))
        if _mmd2_from_kernel(k, perm[:m], perm[m:]) >= observed:
            exceed += 1
    p_value = (exceed + 1) / (permutations + 1)
    return DriftTestResult(
        metric=metric,
        test="mmd_rbf_permutation",
        statistic=observed,
        p_value=p_value,
        drifted=p_value < alpha,
        alpha=alpha,
        reference_n=len(x),
        current_n=len(y),
        details={"bandwidth": bandwidth, "permutations": permutations},
    )


def ks_test(
    reference: Sequence[float],
    current: Sequence[float],
    metric: str,
    alpha: float = 0.05,
) -> DriftTestResult:
    """Two-sample Kolmogorov-Smirnov on a scalar (prompt/output length, scores)."""
    from scipy import stats

    x, y = np.asarray(reference, dtype=float), np.asarray(current, dtype=float)
    _check_sizes(len(x), len(y), metric)
    result = stats.ks_2samp(x, y)
    p_value = float(result.pvalue)
    return DriftTestResult(
        metric=metric,
        test="ks_2samp",
        statistic=float(result.statistic),
        p_value=p_value,
        drifted=p_value < alpha,
        alpha=alpha,
        reference_n=len(x),
        current_n=len(y),
        details={"reference_mean": float(x.mean()), "current_mean": float(y.mean())},
    )


def proportion_test(
    reference_hits: int,
    reference_n: int,
    current_hits: int,
    current_n: int,
    metric: str,
    alpha: float = 0.05,
) -> DriftTestResult:
    """Two-proportion z-test (pooled) for rates such as toxicity, refusals or thumbs-down."""
    from scipy import stats

    _check_sizes(reference_n, current_n, metric)
    if not (0 <= reference_hits <= reference_n and 0 <= current_hits <= current_n):
        raise InvalidInputError(f"{metric}: hits must be between 0 and the window size")
    p1, p2 = reference_hits / reference_n, current_hits / current_n
    pooled = (reference_hits + current_hits) / (reference_n + current_n)
    se = float(np.sqrt(pooled * (1 - pooled) * (1 / reference_n + 1 / current_n)))
    z = 0.0 if se == 0 else (p2 - p1) / se
    p_value = float(2 * stats.norm.sf(abs(z))) if se > 0 else 1.0
    return DriftTestResult(
        metric=metric,
        test="two_proportion_z",
        statistic=z,
        p_value=min(1.0, p_value),
        drifted=p_value < alpha,
        alpha=alpha,
        reference_n=reference_n,
        current_n=current_n,
        details={"reference_rate": p1, "current_rate": p2},
    )
