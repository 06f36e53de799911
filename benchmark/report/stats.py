"""Statistics for comparing methods on one test set: DeLong, the hierarchical bootstrap, Holm.

Pure functions on arrays (no files, no results); :mod:`benchmark.report.comparison` applies them to
stored predictions.

* **DeLong** (DeLong, DeLong & Clarke-Pearson 1988, Biometrics 44:837) with the fast midrank
  algorithm of Sun & Xu (2014, IEEE Signal Processing Letters 21:1389), O(n log n) per score:
  AUCs, their covariance (sample (n-1) variances of the placements, as R's pROC) and tests of
  any linear contrast of correlated AUCs. Validated against pROC's own unit-test values
  (tests/test_stats.py), where it is the analytic check of the bootstrap's test-set variance.
  Vectorised over leading axes, so simulations run in one call.
* **Test-set resampling** (:func:`bootstrap_counts`): patients (records where patients are
  unknown) drawn with replacement within label strata, as pROC stratifies cases and controls;
  resamples without a known positive and negative for a scored label are redrawn (Strodthoff et
  al. 2021). The counts are generated once per test set and shared by all methods (paired
  comparisons). AUROCs of all resamples are computed at once from the counts (weighted
  Mann-Whitney over tie groups), not with one ``roc_auc_score`` call per resample. A label a
  record's source never annotates (NaN in ``y_true``) is left out of that label's AUROC.
* **Seeds and test records together** (:func:`hierarchical_test`): every p-value and CI of a
  seed-mean score or difference comes from one bootstrap that resamples seeds and test records,
  read as a studentised pair (the statistic against Student's t, the CI its inversion), so a CI
  and its p never disagree. One seed per method is pROC's bootstrap test.
* **Holm** (1979) step-down adjustment of a family of p-values.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from scipy import stats as st

from benchmark.nn.metrics import known_entries, scorable_labels

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
    df: float = float("inf")  # degrees of freedom of the reference distribution (inf: the normal)
    #: hierarchical bootstrap: (across-seed variance, test-set variance) of the estimate
    parts: tuple[float, float] | None = None

    def reversed(self) -> Test:
        """The same test of b - a."""
        return dataclasses.replace(
            self, estimate=-self.estimate, statistic=-self.statistic, ci=(-self.ci[1], -self.ci[0])
        )


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


# -- test-set resampling: stratified, by patient -------------------------------------------------
def resampling_units(patient_ids: np.ndarray | None, n: int) -> np.ndarray:
    """(N,) the unit each record is resampled with: its patient (records of one patient are drawn
    together, so a patient with three records does not count as three independent cases), or
    itself when the patients are unknown."""
    if patient_ids is None:
        return np.arange(n)
    ids = np.asarray(patient_ids).astype(str)
    if len(ids) != n:
        raise ValueError(f"{len(ids)} patient ids for {n} records")
    return np.unique(ids, return_inverse=True)[1].reshape(-1)


def label_strata(y_true: np.ndarray, units: np.ndarray) -> np.ndarray:
    """(U,) the stratum of each unit: its label pattern (per label: positive in one of its records,
    known negative, or unknown). For one label these are pROC's cases and controls
    (``boot.stratified = TRUE``), so every resample keeps the test set's class counts; for many,
    every pattern's count is kept. Units whose pattern no other unit shares are pooled into one
    stratum [choice]: a stratum of one unit would be drawn unchanged in every resample and add
    nothing to the variance (the collapsed strata of survey sampling)."""
    positive, known = known_entries(y_true)
    positive = positive.reshape(len(units), -1)
    known = known.reshape(len(units), -1)
    n_units = int(units.max()) + 1 if len(units) else 0
    unit_positive = np.zeros((n_units, positive.shape[1]), dtype=bool)
    unit_known = np.zeros_like(unit_positive)
    np.logical_or.at(unit_positive, units, positive)
    np.logical_or.at(unit_known, units, known)
    pattern = np.where(unit_positive, 2, unit_known.astype(np.int8))
    _, strata, sizes = np.unique(pattern, axis=0, return_inverse=True, return_counts=True)
    strata = strata.reshape(-1)
    lonely = sizes[strata] == 1
    if lonely.sum() > 1:
        strata = np.where(lonely, len(sizes), strata)
    return np.unique(strata, return_inverse=True)[1].reshape(-1)


def bootstrap_counts(
    y_true: np.ndarray,
    n_resamples: int = 1000,
    seed: int = 0,
    patient_ids: np.ndarray | None = None,
    min_acceptance: float = 0.01,
) -> np.ndarray:
    """(n_resamples, N) how often each test record appears in each resample of the test set.

    Units (patients, or records without patient ids: :func:`resampling_units`) are drawn with
    replacement within their label stratum (:func:`label_strata`), each stratum as many as it has;
    a unit's draw brings all its records. A resample in which a scored label has no known positive
    or no known negative is rejected and redrawn (as in Strodthoff et al. 2021,
    ``get_appropriate_bootstrap_samples``): with strata this happens only where pooled strata or
    patients with several records leave the counts free. Raises :class:`StatsError` when fewer than
    ``min_acceptance`` of the draws would be kept, naming the rarest labels.
    """
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    y = np.asarray(y_true, dtype=np.float64)
    y = y[:, None] if y.ndim == 1 else y
    n = len(y)
    units = resampling_units(patient_ids, n)
    strata = label_strata(y, units)
    members = [np.flatnonzero(strata == h) for h in range(int(strata.max()) + 1)]
    positive, known = known_entries(y[:, scorable_labels(y)])
    negative = (known & ~positive).astype(np.int64)
    rng = np.random.default_rng(seed)
    per_draw = max(16, min(n_resamples, 20_000_000 // max(n, 1)))  # bounded memory
    kept: list[np.ndarray] = []
    drawn = accepted = 0
    while accepted < n_resamples:
        unit_counts = np.zeros((per_draw, len(strata)), dtype=np.int64)
        rows = np.arange(per_draw)[:, None]
        for chosen in members:
            np.add.at(unit_counts, (rows, chosen[rng.integers(0, len(chosen), size=(per_draw, len(chosen)))]), 1)
        counts = unit_counts[:, units]
        drawn += per_draw
        ok = ((counts @ positive.astype(np.int64) > 0) & (counts @ negative > 0)).all(axis=1)
        kept.append(counts[ok].astype(np.uint16))
        accepted += int(ok.sum())
        if drawn >= 10 * n_resamples and accepted < min_acceptance * drawn:
            totals = positive.sum(axis=0)
            rarest = np.argsort(totals)[:3]
            raise StatsError(
                f"only {accepted} of {drawn} bootstrap resamples keep a positive for every label "
                f"(rarest labels have {totals[rarest].tolist()} positives of {n}); drop labels "
                f"with so few test positives from the label set"
            )
    return np.concatenate(kept)[:n_resamples]


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


def bootstrap_auroc(y_true: np.ndarray, y_score: np.ndarray, counts: np.ndarray, chunk: int = 200) -> np.ndarray:
    """Per-label AUROC (B, K) of ``y_score`` (N, K) in each resample of ``counts`` (B, N), over
    the records whose label is known; NaN for labels without a known positive and negative."""
    y_true, y_score = np.asarray(y_true, dtype=np.float64), np.asarray(y_score)
    if y_true.ndim == 1:
        y_true, y_score = y_true[:, None], y_score[:, None]
    positive, known = known_entries(y_true)
    out = np.full((len(counts), y_true.shape[1]), np.nan)
    labels = np.flatnonzero(scorable_labels(y_true))
    for start in range(0, len(counts), chunk):
        weights = np.asarray(counts[start : start + chunk]).T.astype(np.float64, order="C")
        for k in labels:
            rows = known[:, k]
            out[start : start + chunk, k] = weighted_auroc(positive[rows, k], y_score[rows, k], weights[rows])
    return out


# -- seeds and test records together: the hierarchical bootstrap -----------------------------------
@dataclass(frozen=True)
class SeedScores:
    """One method's score (a macro AUROC, or one label's AUROC) on one test set: per seed on the
    whole test set, ``point`` (S,), and on each test-set resample, ``resampled`` (S, B)."""

    seeds: tuple[int, ...]
    point: np.ndarray
    resampled: np.ndarray

    def __post_init__(self):
        if len(self.seeds) < 1 or np.shape(self.point) != (len(self.seeds),) or np.ndim(self.resampled) != 2:
            raise ValueError("SeedScores needs seeds (S,), point (S,) and resampled (S, B)")
        if len(self.resampled) != len(self.seeds):
            raise ValueError(f"resampled has {len(self.resampled)} rows for {len(self.seeds)} seeds")

    @property
    def estimate(self) -> float:
        return float(np.mean(self.point))


def seed_draws(seeds: tuple[int, ...], n_resamples: int, seed: int = 0) -> np.ndarray:
    """(B, m) positions of the seeds drawn in each resample: m = S - 1 of the S seeds, with
    replacement (one draw of the only seed when S = 1).

    Why S - 1: the bootstrap variance of a mean of m draws from S values is (S-1)/S · s²/m, which is
    the unbiased s²/S at m = S - 1 (the with-replacement bootstrap of survey sampling, Rao & Wu 1988,
    JASA 83:231); drawing S would shrink the seed variance by (S-1)/S (by a third with 3 seeds).
    The draws are a function of the seed list alone, so two methods run with the same seeds are
    resampled at the same seeds (paired: a seed fixes the data order and the probe's initialisation
    for every method), methods with different seeds independently."""
    if len(seeds) == 1:
        return np.zeros((n_resamples, 1), dtype=np.int64)
    rng = np.random.default_rng([seed, len(seeds), *(int(s) for s in seeds)])
    return rng.integers(0, len(seeds), size=(n_resamples, len(seeds) - 1))


def hierarchical_values(scores: SeedScores, seed: int = 0) -> np.ndarray:
    """(B,) the seed-mean score in each resample: resample b's test records and its seed draw."""
    draws = seed_draws(scores.seeds, scores.resampled.shape[1], seed)
    return scores.resampled[draws, np.arange(len(draws))[:, None]].mean(axis=1)


def _seed_components(a: SeedScores, b: SeedScores | None) -> list[tuple[float, int]]:
    """(variance, degrees of freedom) of each across-seed part of the seed-mean (difference)."""
    if b is not None and a.seeds == b.seeds:
        parts = [np.asarray(a.point) - np.asarray(b.point)]  # paired: one difference per seed
    else:
        parts = [np.asarray(s.point) for s in (a, b) if s is not None]
    return [(float(np.var(p, ddof=1) / len(p)), len(p) - 1) for p in parts if len(p) > 1]


def hierarchical_test(a: SeedScores, b: SeedScores | None = None, level: float = 0.95, seed: int = 0) -> Test:
    """Test of the seed-mean a - b (or of a alone) from one hierarchical bootstrap; CI and p from
    the same distribution, so they agree (0 lies outside the CI exactly when p < 1 - level).

    Each resample draws test records (:func:`bootstrap_counts`) and, independently, seeds
    (:func:`seed_draws`); the difference of the seed-mean scores over resamples is the bootstrap
    distribution, its standard deviation ``se``. Resampling both the rows (seeds) and the columns
    (test records) of a crossed design is Owen's pigeonhole bootstrap (Owen 2007, Ann. Appl. Stat.
    1:386), mildly conservative. The studentised pair: T = (a - b) / se against Student's t with
    Satterthwaite's degrees of freedom (Satterthwaite 1946, Biometrics Bulletin 2:110) for the sum
    of the test-set part (the variance over resamples at all seeds; infinite degrees of freedom, as
    pROC's normal test) and the across-seed parts (s²/S with S - 1 degrees of freedom each; one
    paired part when both methods ran the same seeds, Welch's two otherwise); the CI is
    (a - b) ± t · se, the set of differences this test would not reject. Where the seeds dominate
    the variance t has few degrees of freedom; simulated null rejection at 0.05 is 0.05-0.07 with
    3 to 10 seeds, but 0.11 with 2 (the seed variance rests on one degree of freedom), against
    0.15-0.49 for the test-set-only bootstrap (tests/test_stats.py). With one seed per method there is no
    across-seed part: T is pROC's bootstrap test (``roc.test(method = "bootstrap")``: the difference
    over the standard deviation of its resampled values, against the normal) and the seed
    variance is not in the test.
    """
    estimate = a.estimate - (b.estimate if b is not None else 0.0)
    draws = hierarchical_values(a, seed) - (hierarchical_values(b, seed) if b is not None else 0.0)
    test_set = np.asarray(a.resampled).mean(axis=0) - (np.asarray(b.resampled).mean(axis=0) if b is not None else 0.0)
    parts = _seed_components(a, b)
    seed_variance = float(sum(v for v, _ in parts))
    test_variance = float(np.var(test_set, ddof=1)) if len(test_set) > 1 else 0.0
    if len(draws) < 2:  # one resample measures no spread: no evidence either way
        return Test(
            estimate, float("nan"), 0.0, 1.0, (float("-inf"), float("inf")), parts=(seed_variance, test_variance)
        )
    se = float(np.std(draws, ddof=1))
    denominator = sum(v**2 / df for v, df in parts)
    df = (seed_variance + test_variance) ** 2 / denominator if denominator > 0 else float("inf")
    dist = st.norm if np.isinf(df) else st.t(df)
    if se == 0:  # every resample gives the same difference: only an exact tie fits the null
        return Test(
            estimate,
            0.0,
            0.0,
            1.0 if estimate == 0 else 0.0,
            (estimate, estimate),
            df=df,
            parts=(seed_variance, test_variance),
        )
    statistic = estimate / se
    half = float(dist.ppf(0.5 + level / 2)) * se
    return Test(
        estimate,
        se,
        statistic,
        float(_p_value(statistic, "two-sided", dist)),
        (estimate - half, estimate + half),
        df=df,
        parts=(seed_variance, test_variance),
    )


# -- multiplicity --------------------------------------------------------------------------------
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
