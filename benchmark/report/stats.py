"""Statistics for comparing methods on one test set: DeLong, bootstrap, across-seed tests, Holm.

Pure functions on arrays (no files, no results); :mod:`benchmark.report.comparison` applies them to
stored predictions.

* **DeLong** (DeLong, DeLong & Clarke-Pearson 1988, Biometrics 44:837) with the fast midrank
  algorithm of Sun & Xu (2014, IEEE Signal Processing Letters 21:1389), O(n log n) per score:
  AUCs, their covariance (sample (n-1) variances of the placements, as R's pROC) and tests of
  any linear contrast of correlated AUCs. Validated against pROC's own unit-test values
  (tests/test_stats.py). Vectorised over leading axes, so simulations run in one call.
* **Bootstrap** of the test set: ``n`` resamples of the records, drawn with replacement; a
  resample in which a scored label has no positive (or no negative) is rejected and redrawn
  (as in Strodthoff et al. 2021, PTB-XL benchmark, ``get_appropriate_bootstrap_samples``), so
  every resample scores the same labels. The indices are generated once per test set and
  shared by all methods (paired comparisons). AUROCs of all resamples are computed at once
  from resampling counts (weighted Mann-Whitney over tie groups), not with one
  ``roc_auc_score`` call per resample. Paired comparisons use pROC's bootstrap test: the
  difference over the standard deviation of its resampled values, against the normal.
* **Across seeds**: paired t-test of per-seed scores (seeds pair the pretraining/probing runs).
* **Holm** (1979) step-down adjustment of a family of p-values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats as st

#: two-sided 95 % normal quantile (pROC's 1.959964)
Z95 = float(st.norm.ppf(0.975))
ALTERNATIVES = ("two-sided", "greater", "less")


class StatsError(ValueError):
    """Data on which a statistic is undefined (e.g. a label with no positive)."""


@dataclass(frozen=True)
class Test:
    """Result of a test of ``estimate`` = 0: the estimate, its standard error, the statistic
    (z or t), the p-value of ``alternative`` and a two-sided ``level`` confidence interval."""

    estimate: float
    se: float
    statistic: float
    p: float
    ci: tuple[float, float]
    alternative: str = "two-sided"


def _p_value(statistic, alternative: str, dist=st.norm):
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {ALTERNATIVES}, got {alternative!r}")
    if alternative == "greater":
        return dist.sf(statistic)
    if alternative == "less":
        return dist.cdf(statistic)
    return np.minimum(1.0, 2 * dist.sf(np.abs(statistic)))


# -- DeLong --------------------------------------------------------------------------------------
def _split_classes(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).astype(bool)
    if y.ndim != 1 or y.shape[0] != scores.shape[-1]:
        raise ValueError(f"y_true must be (N,) matching the scores' last axis, got {y.shape} and {scores.shape}")
    if y.all() or not y.any():
        raise StatsError("AUROC needs at least one positive and one negative record")
    return scores[..., y], scores[..., ~y]


def delong(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUCs (..., M) and DeLong covariance (..., M, M) of M score vectors on one labelling.

    ``scores`` is (..., M, N), or (N,) for one score (then a scalar AUC and variance are
    returned); higher = more likely positive; ties count
    one half (Mann-Whitney; equals scikit-learn's ``roc_auc_score``). Sun & Xu's algorithm: the
    placements come from midranks within the positives, within the negatives and overall.
    """
    scores = np.asarray(scores, dtype=np.float64)
    single = scores.ndim == 1
    scores = scores[None] if single else scores
    pos, neg = _split_classes(y_true, scores)
    m, n = pos.shape[-1], neg.shape[-1]
    overall = st.rankdata(np.concatenate([pos, neg], axis=-1), axis=-1)
    within_pos, within_neg = st.rankdata(pos, axis=-1), st.rankdata(neg, axis=-1)
    auc = overall[..., :m].sum(-1) / (m * n) - (m + 1) / (2 * n)
    v10 = (overall[..., :m] - within_pos) / n  # placement of each positive among the negatives
    v01 = 1.0 - (overall[..., m:] - within_neg) / m  # ... of each negative among the positives

    def sample_cov(v: np.ndarray, k: int) -> np.ndarray:
        if k < 2:
            return np.zeros(v.shape[:-1] + v.shape[-2:-1])
        centred = v - v.mean(-1, keepdims=True)
        return centred @ np.swapaxes(centred, -1, -2) / (k - 1)

    cov = sample_cov(v10, m) / m + sample_cov(v01, n) / n
    return (auc[0], cov[0, 0]) if single else (auc, cov)


def delong_contrast(
    y_true: np.ndarray, scores: np.ndarray, weights: np.ndarray, alternative: str = "two-sided", level: float = 0.95
) -> Test:
    """Test ``weights · AUC`` = 0 for M correlated AUCs on one labelling (DeLong et al. 1988).

    ``weights`` (1, -1) is the paired test of two scores (pROC ``roc.test(method="delong")``);
    (1/S, ..., -1/S, ...) compares two methods' AUCs averaged over S seeds each.
    """
    weights = np.asarray(weights, dtype=np.float64)
    auc, cov = delong(y_true, np.asarray(scores))
    estimate = float(weights @ auc)
    var = float(weights @ cov @ weights)
    se = float(np.sqrt(max(var, 0.0)))
    if se == 0.0:  # identical scores: no evidence either way (pROC reports Z = 0, p = 1)
        return Test(estimate, 0.0, 0.0, 1.0, (estimate, estimate), alternative)
    z = estimate / se
    half = st.norm.ppf(0.5 + level / 2) * se
    return Test(
        estimate, se, float(z), float(_p_value(z, alternative)), (estimate - half, estimate + half), alternative
    )


def delong_test(
    y_true: np.ndarray, score_a: np.ndarray, score_b: np.ndarray, alternative: str = "two-sided", level: float = 0.95
) -> Test:
    """Paired DeLong test of AUC(a) - AUC(b) on the same records."""
    return delong_contrast(y_true, np.stack([score_a, score_b]), np.array([1.0, -1.0]), alternative, level)


def delong_ci(y_true: np.ndarray, score: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Normal-approximation CI of one AUC with DeLong's variance, clipped to [0, 1] (pROC ``ci.auc``)."""
    auc, var = delong(y_true, score)
    half = st.norm.ppf(0.5 + level / 2) * np.sqrt(var)
    return float(max(0.0, auc - half)), float(min(1.0, auc + half))


# -- bootstrap -----------------------------------------------------------------------------------
def scored_labels(y_true: np.ndarray) -> np.ndarray:
    """(K,) bool: labels with a positive and a negative, i.e. with a defined AUROC."""
    positives = np.asarray(y_true).sum(axis=0)
    return (positives > 0) & (positives < len(y_true))


def bootstrap_indices(
    y_true: np.ndarray, n_resamples: int = 1000, seed: int = 0, min_acceptance: float = 0.01
) -> np.ndarray:
    """(n_resamples, N) record indices of test-set resamples, each keeping a positive and a
    negative for every label that has both in ``y_true`` (N, K); others are rejected.

    Raises :class:`StatsError` when fewer than ``min_acceptance`` of the draws would be kept
    (labels with one or two positives), naming the rarest labels.
    """
    y = np.asarray(y_true).astype(bool)
    y = y[:, None] if y.ndim == 1 else y
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    required = y[:, scored_labels(y)]
    rng = np.random.default_rng(seed)
    n, drawn = len(y), 0
    kept: list[np.ndarray] = []
    dtype = np.uint16 if n <= np.iinfo(np.uint16).max else np.uint32
    per_draw = max(16, min(n_resamples, 20_000_000 // n))  # bounded memory for the counts
    while sum(len(k) for k in kept) < n_resamples:
        chunk = rng.integers(0, n, size=(per_draw, n)).astype(dtype)
        drawn += len(chunk)
        positives = resample_counts(chunk, n) @ required.astype(np.int64)  # (draws, labels)
        kept.append(chunk[((positives > 0) & (positives < n)).all(axis=1)])
        accepted = sum(len(k) for k in kept)
        if drawn >= 10 * n_resamples and accepted < min_acceptance * drawn:
            counts = required.sum(axis=0)
            rarest = np.argsort(counts)[:3]
            raise StatsError(
                f"only {accepted} of {drawn} bootstrap resamples keep a positive for every label "
                f"(rarest labels have {counts[rarest].tolist()} positives of {n}); drop labels "
                f"with so few test positives from the label set"
            )
    return np.concatenate(kept)[:n_resamples]


def resample_counts(indices: np.ndarray, n: int) -> np.ndarray:
    """(B, n): how often each record appears in each resample."""
    indices = np.asarray(indices, dtype=np.int64)
    offsets = indices + n * np.arange(len(indices))[:, None]
    return np.bincount(offsets.ravel(), minlength=len(indices) * n).reshape(len(indices), n)


def weighted_auroc(y_true: np.ndarray, y_score: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """AUROC of one label under each column of resampling ``counts`` (N, B): (B,).

    Mann-Whitney with ties one half, over tie groups of the sorted scores: a positive's
    weight times the negative weight strictly below its group plus half the weight in it.
    (Records along the first axis keep the group sums contiguous in memory, hence fast.)
    """
    order = np.argsort(y_score, kind="stable")
    score, y = np.asarray(y_score)[order], np.asarray(y_true).astype(bool)[order]
    w = np.asarray(counts, dtype=np.float64)[order]
    pos, neg = w * y[:, None], w * ~y[:, None]
    starts = np.flatnonzero(np.r_[True, score[1:] != score[:-1]])
    if len(starts) < len(score):  # ties: sum within tie groups
        pos, neg = np.add.reduceat(pos, starts, axis=0), np.add.reduceat(neg, starts, axis=0)
    below = np.cumsum(neg, axis=0) - neg
    numerator = (pos * (below + 0.5 * neg)).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return numerator / (pos.sum(axis=0) * neg.sum(axis=0))


def bootstrap_auroc(y_true: np.ndarray, y_score: np.ndarray, indices: np.ndarray, chunk: int = 200) -> np.ndarray:
    """Per-label AUROC (B, K) of ``y_score`` (N, K) in each resample of ``indices`` (B, N);
    NaN for labels without a positive and a negative in the full ``y_true``."""
    y_true, y_score = np.asarray(y_true), np.asarray(y_score)
    if y_true.ndim == 1:
        y_true, y_score = y_true[:, None], y_score[:, None]
    out = np.full((len(indices), y_true.shape[1]), np.nan)
    labels = np.flatnonzero(scored_labels(y_true))
    for start in range(0, len(indices), chunk):
        counts = resample_counts(indices[start : start + chunk], len(y_true)).T.astype(np.float64, order="C")
        for k in labels:
            out[start : start + chunk, k] = weighted_auroc(y_true[:, k], y_score[:, k], counts)
    return out


def percentile_ci(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of ``values`` (B,)."""
    lo, hi = np.quantile(np.asarray(values), [0.5 - level / 2, 0.5 + level / 2])
    return float(lo), float(hi)


def paired_bootstrap(
    estimate_a: float, estimate_b: float, resampled_a: np.ndarray, resampled_b: np.ndarray, level: float = 0.95
) -> Test:
    """Paired bootstrap test of a - b from the statistics of both methods on the same resamples.

    The p-value is pROC's bootstrap test (``roc.test(method="bootstrap")``): D = (a - b) / s with s
    the standard deviation of the bootstrap differences, two-sided against the normal distribution.
    Why not the fraction of resamples beyond 0: that p cannot fall below 2 / (B + 1) (0.002 at
    1000 resamples), so after Holm over a leaderboard's ~27 tests no difference could ever reach
    0.05, however large — a floor set by the resample count, not by the data. The CI stays the
    percentile interval of the differences."""
    d = np.asarray(resampled_a) - np.asarray(resampled_b)
    estimate, ci = estimate_a - estimate_b, percentile_ci(d, level)
    if len(d) < 2:  # one resample measures no spread: no evidence either way
        return Test(estimate, float("nan"), 0.0, 1.0, ci)
    se = float(d.std(ddof=1))
    if se == 0:  # every resample gives the same difference: only an exact tie fits the null
        return Test(estimate, se, 0.0, 1.0 if estimate == 0 else 0.0, ci)
    z = estimate / se
    return Test(estimate, se, z, float(_p_value(z, "two-sided")), ci)


# -- across seeds and multiplicity ---------------------------------------------------------------
def paired_t_test(a: np.ndarray, b: np.ndarray, level: float = 0.95) -> Test:
    """Paired t-test of mean(a - b) = 0 over matched seeds (needs >= 2 pairs)."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if len(d) < 2:
        raise StatsError(f"an across-seed test needs at least 2 paired seeds, got {len(d)}")
    estimate, se = float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d)))
    if se == 0.0:
        return Test(
            estimate,
            0.0,
            0.0 if estimate == 0 else np.copysign(np.inf, estimate),
            1.0 if estimate == 0 else 0.0,
            (estimate, estimate),
        )
    t = estimate / se
    dist = st.t(len(d) - 1)
    half = dist.ppf(0.5 + level / 2) * se
    return Test(estimate, se, float(t), float(_p_value(t, "two-sided", dist)), (estimate - half, estimate + half))


#: smallest p-value printed as a number: a normal tail beyond it (1e-99 for a clear difference on
#: 600 records) is an artefact of the approximation, not a measured probability
P_FLOOR = 1e-4


def format_p(p: float, digits: int = 3) -> str:
    """A p-value for tables: ``digits`` significant digits, or ``<0.0001`` below :data:`P_FLOOR`."""
    return f"<{P_FLOOR:g}" if p < P_FLOOR else f"{p:.{digits}g}"


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error control), same order as given."""
    p = np.asarray(p_values, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    m = len(p)
    adjusted_sorted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    adjusted = np.empty_like(p)
    adjusted[order] = adjusted_sorted
    return adjusted
