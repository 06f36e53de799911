"""The statistics module against R's pROC (external reference values) and by simulation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as st
from sklearn.metrics import roc_auc_score

from benchmark.report import stats


@pytest.fixture
def asah(shared_data):
    import pandas as pd

    frame = pd.read_csv(shared_data / "reference" / "aSAH.csv")
    return frame.assign(y=frame["outcome"] == "Poor")


# -- pROC's own unit-test values (shared/data/reference/README.md) -------------------------------
def test_delong_aucs_variances_and_covariances_match_proc(asah):
    scores = asah[["wfns", "s100b", "ndka"]].to_numpy(float).T
    auc, cov = stats.delong(asah["y"].to_numpy(), scores)
    np.testing.assert_allclose(auc, [0.823678861788618, 0.731368563685637, 0.611957994579946], rtol=1e-12)
    np.testing.assert_allclose(np.diag(cov), [0.00146991470882363, 0.00266868245717244, 0.0031908105493913], rtol=1e-10)
    wfns, s100b, ndka = 0, 1, 2
    np.testing.assert_allclose(
        [cov[wfns, ndka], cov[ndka, s100b], cov[s100b, wfns]],
        [-0.000532967856762438, -0.000756164938056579, 0.00119615567376754],
        rtol=1e-10,
    )
    np.testing.assert_allclose(cov, cov.T)


@pytest.mark.parametrize(
    "a, b, z, p, ci",
    [
        ("wfns", "s100b", 2.20898359144091, 0.0271757822291882, (0.0104061769564846, 0.174214419249478)),
        ("wfns", "ndka", 2.79777591868904, 0.00514557970691098, (0.0634011709339876, 0.3600405634833566)),
        ("ndka", "s100b", -1.39077002573558, 0.164295175223054, (-0.2876917446341914, 0.0488706064228094)),
    ],
)
def test_paired_delong_test_matches_proc(asah, a, b, z, p, ci):
    result = stats.delong_test(asah["y"].to_numpy(), asah[a].to_numpy(float), asah[b].to_numpy(float))
    assert result.statistic == pytest.approx(z, rel=1e-10)
    assert result.p == pytest.approx(p, rel=1e-9)
    np.testing.assert_allclose(result.ci, ci, rtol=1e-9)


def test_one_sided_and_identical_curves_match_proc(asah):
    y, wfns, s100b = asah["y"].to_numpy(), asah["wfns"].to_numpy(float), asah["s100b"].to_numpy(float)
    assert stats.delong_test(y, wfns, s100b, "greater").p == pytest.approx(0.0135878911145941, rel=1e-9)
    assert stats.delong_test(y, wfns, s100b, "less").p == pytest.approx(0.986412108885406, rel=1e-9)
    same = stats.delong_test(y, wfns, wfns)
    assert (same.statistic, same.p) == (0.0, 1.0)


def test_delong_confidence_interval_of_an_auc_matches_proc(asah):
    y, ndka = asah["y"].to_numpy(), asah["ndka"].to_numpy(float)
    np.testing.assert_allclose(stats.delong_ci(y, ndka), (0.501244999271703, 0.722670989888189), rtol=1e-10)
    female = (asah["gender"] == "Female").to_numpy()
    assert stats.delong(y[female], ndka[female])[0] == pytest.approx(0.6671428571, rel=1e-9)
    np.testing.assert_allclose(stats.delong_ci(y[female], ndka[female]), (0.5261398281, 0.8081458862), rtol=1e-9)


def test_bootstrap_ci_lands_near_procs_stratified_bootstrap(asah):
    """pROC (2000 stratified replicates) gave 0.7414-0.8938 for wfns; any correct percentile
    bootstrap lands within about 0.02 of those bounds."""
    y, wfns = asah["y"].to_numpy(), asah["wfns"].to_numpy(float)
    for seed in range(3):
        indices = stats.bootstrap_indices(y, 2000, seed=seed)
        lo, hi = stats.percentile_ci(stats.bootstrap_auroc(y, wfns, indices)[:, 0])
        assert abs(lo - 0.7414) < 0.02 and abs(hi - 0.8938) < 0.02, (seed, lo, hi)


# -- bootstrap mechanics -------------------------------------------------------------------------
def test_resampled_aurocs_equal_sklearn_on_each_resample_with_ties():
    rng = np.random.default_rng(0)
    y = rng.random((120, 3)) < [0.1, 0.4, 0.7]
    scores = np.round(rng.random((120, 3)) + 0.5 * y, 1)  # many ties
    indices = stats.bootstrap_indices(y, 50, seed=1)
    fast = stats.bootstrap_auroc(y, scores, indices)
    slow = np.array([[roc_auc_score(y[i, k], scores[i, k]) for k in range(3)] for i in indices])
    np.testing.assert_allclose(fast, slow, rtol=1e-12)


def test_bootstrap_rejects_resamples_without_positives_and_is_reproducible():
    y = np.zeros((200, 3), dtype=np.uint8)
    y[:2, 0] = 1  # a label with 2 positives: ~2 % of plain resamples have none
    y[:100, 1] = 1
    indices = stats.bootstrap_indices(y, 1000, seed=7)
    assert indices.shape == (1000, 200) and indices.dtype == np.uint16
    positives = np.stack([y[i].sum(axis=0) for i in indices])
    assert (positives[:, :2] > 0).all()  # label 2 has no positive at all: not required
    np.testing.assert_array_equal(indices, stats.bootstrap_indices(y, 1000, seed=7))
    assert not np.array_equal(indices, stats.bootstrap_indices(y, 1000, seed=8))


def test_bootstrap_refuses_label_sets_it_cannot_resample():
    y = np.zeros((500, 20), dtype=np.uint8)
    y[np.arange(20), np.arange(20)] = 1  # 20 labels with one positive each: ~0.01 % acceptance
    with pytest.raises(stats.StatsError, match="positives"):
        stats.bootstrap_indices(y, 100, seed=0)


def test_holm_adjustment():
    np.testing.assert_allclose(stats.holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    assert stats.holm([]).shape == (0,)
    np.testing.assert_allclose(stats.holm([0.5, 0.9]), [1.0, 1.0])


def test_paired_t_test_equals_scipy():
    a, b = np.array([0.81, 0.83, 0.80, 0.84]), np.array([0.78, 0.80, 0.80, 0.79])
    result, reference = stats.paired_t_test(a, b), st.ttest_rel(a, b)
    assert result.statistic == pytest.approx(reference.statistic)
    assert result.p == pytest.approx(reference.pvalue)
    assert result.ci[0] < result.estimate < result.ci[1]
    with pytest.raises(stats.StatsError, match="at least 2"):
        stats.paired_t_test(a[:1], b[:1])


# -- calibration by simulation -------------------------------------------------------------------
def simulate(n_datasets: int, n: int, effect: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels (n,) and scores (n_datasets, 2, n) of two correlated methods; method b's signal
    is weaker by ``effect`` (0: identically distributed predictions)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) < n // 3
    shared = rng.standard_normal((n_datasets, 1, n))
    own = rng.standard_normal((n_datasets, 2, n))
    signal = np.array([1.0, 1.0 - effect])[None, :, None] * y
    return y, signal + 0.7 * shared + 0.7 * own


@pytest.mark.parametrize("effect, low, high", [(0.0, 0.03, 0.07), (0.6, 0.8, 1.0)])
def test_delong_test_is_calibrated_under_the_null_and_detects_an_effect(effect, low, high):
    y, scores = simulate(4000, 240, effect, seed=11)
    auc, cov = stats.delong(y, scores)
    z = (auc[:, 0] - auc[:, 1]) / np.sqrt(cov[:, 0, 0] + cov[:, 1, 1] - 2 * cov[:, 0, 1])
    rejection = np.mean(2 * st.norm.sf(np.abs(z)) < 0.05)
    assert low <= rejection <= high, rejection
    one = stats.delong_test(y, scores[0, 0], scores[0, 1])  # the scalar API agrees
    assert one.statistic == pytest.approx(z[0])


@pytest.mark.parametrize("effect, n_datasets, low, high", [(0.0, 1000, 0.03, 0.07), (0.6, 200, 0.8, 1.0)])
def test_paired_bootstrap_is_calibrated_under_the_null_and_detects_an_effect(effect, n_datasets, low, high):
    y, scores = simulate(n_datasets, 150, effect, seed=5)
    indices = stats.bootstrap_indices(y, 200, seed=0)  # the labels are fixed: one set serves all
    columns = scores.reshape(-1, len(y)).T  # (n, datasets x 2 methods)
    resampled = stats.bootstrap_auroc(np.repeat(y[:, None], columns.shape[1], 1), columns, indices)
    point = stats.delong(y, scores)[0]
    p = [stats.paired_bootstrap(*point[d], resampled[:, 2 * d], resampled[:, 2 * d + 1]).p for d in range(len(scores))]
    assert low <= np.mean(np.array(p) < 0.05) <= high


def test_paired_bootstrap_agrees_with_proc_delong_on_asah(asah):
    """pROC's bootstrap test is DeLong's z with a bootstrap standard deviation: on aSAH (wfns vs
    ndka, DeLong p = 0.0051) 2000 resamples must land near it, not at a resample-count floor."""
    y = asah["y"].to_numpy()
    scores = asah[["wfns", "ndka"]].to_numpy(float)
    resampled = stats.bootstrap_auroc(np.stack([y, y], 1), scores, stats.bootstrap_indices(y[:, None], 2000, seed=0))
    point = stats.delong(y, scores.T)[0]
    result = stats.paired_bootstrap(point[0], point[1], resampled[:, 0], resampled[:, 1])
    assert result.statistic == pytest.approx(2.79777591868904, rel=0.1)
    assert 0.002 < result.p < 0.012


def test_a_clear_difference_survives_holm_over_a_leaderboards_tests():
    """Regression: the p-value used to be the fraction of resamples beyond 0, which cannot go below
    2 / 1001; Holm over a 27-test leaderboard then left every difference at p >= 0.054 (the real
    PTB-XL and transfer tables showed ecg_features +0.35 above random_init as not significant)."""
    y, scores = simulate(1, 500, 1.0, seed=1)
    resampled = stats.bootstrap_auroc(np.stack([y, y], 1), scores[0].T, stats.bootstrap_indices(y, 1000, seed=0))
    point = stats.delong(y, scores[0])[0]
    result = stats.paired_bootstrap(point[0], point[1], resampled[:, 0], resampled[:, 1])
    assert result.estimate > 0.1
    assert stats.holm([result.p] + [0.5] * 26)[0] < 0.001


def test_p_values_beyond_the_normal_approximation_print_as_a_bound():
    assert stats.format_p(2.09e-99) == "<0.0001"
    assert stats.format_p(0.000143) == "0.000143"
    assert stats.format_p(0.05389, 4) == "0.05389"


def test_paired_bootstrap_without_spread_is_decided_by_the_tie():
    same = stats.paired_bootstrap(0.7, 0.7, np.full(10, 0.7), np.full(10, 0.7))
    assert same.p == 1.0
    assert stats.paired_bootstrap(0.8, 0.7, np.full(10, 0.8), np.full(10, 0.7)).p == 0.0
    assert stats.paired_bootstrap(0.8, 0.7, np.array([0.8]), np.array([0.7])).p == 1.0


def test_delong_variance_agrees_with_the_bootstrap_on_a_large_sample():
    y, scores = simulate(1, 3000, 0.3, seed=3)
    _, cov = stats.delong(y, scores[0])
    indices = stats.bootstrap_indices(y, 2000, seed=0)
    resampled = stats.bootstrap_auroc(np.stack([y, y], 1), scores[0].T, indices)
    np.testing.assert_allclose(np.var(resampled, axis=0, ddof=1), np.diag(cov), rtol=0.12)
    difference_var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    assert np.var(resampled[:, 0] - resampled[:, 1], ddof=1) == pytest.approx(difference_var, rel=0.12)


def test_delong_contrast_of_seed_averages_is_the_variance_of_the_mean_auc():
    y, scores = simulate(1, 300, 0.0, seed=2)
    four = np.concatenate([scores[0], scores[0, ::-1] + 0.1])  # 4 correlated score vectors
    weights = np.array([0.5, 0.5, -0.5, -0.5])
    auc, cov = stats.delong(y, four)
    result = stats.delong_contrast(y, four, weights)
    assert result.estimate == pytest.approx(weights @ auc)
    assert result.se**2 == pytest.approx(weights @ cov @ weights)
