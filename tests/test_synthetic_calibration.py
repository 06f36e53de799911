"""The synthetic default against real ECGs (issue 15, item 6), and the statistics that compare them.

The statistics (benchmark/data/ecg_stats.py) are first checked on signals whose answer is known;
then they are measured the same way on a sample of the real PTB-XL NORM records in
``../shared/data/ptbxl`` and on the synthetic default's normal records, and the bounds of the
calibration are asserted. The prepared PTB-XL records are kept in pytest's cache folder, so only
the first run prepares them.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SHARED_DATA

from benchmark.data import ecg_stats
from benchmark.data.contract import LEADS
from ecgbench_datasets.synthetic import SyntheticConfig, generate

pytest.importorskip("neurokit2", reason="the ECG delineator is the optional extra: pip install 'ecgbench[features]'")

FS = 500
N_REAL = 150  # of the 290 PTB-XL NORM records: every other one
N_SYNTHETIC = 400  # records of the default config; about 40 % are normal
LEAD = {name: i for i, name in enumerate(LEADS)}


# -- the statistics on signals with a known answer ---------------------------------------------
def test_low_frequency_fraction_is_the_variance_share_below_0_67_hz():
    t = np.arange(10 * FS) / FS
    slow, fast = 0.3 * np.sin(2 * np.pi * 0.3 * t), 0.4 * np.sin(2 * np.pi * 5.0 * t)
    signal = np.tile(slow + fast + 2.0, (len(LEADS), 1))  # the offset is not variance
    np.testing.assert_allclose(ecg_stats.low_frequency_fraction(signal, FS), 0.09 / (0.09 + 0.16), rtol=1e-9)


def test_correlation_is_pearson_and_nan_for_masked_leads():
    rng = np.random.default_rng(0)
    signal = rng.standard_normal((len(LEADS), 2000))
    mask = np.ones(len(LEADS), bool)
    mask[LEAD["V3"]] = False
    corr = ecg_stats.lead_correlation(signal, mask)
    expected = np.corrcoef(signal)
    keep = np.flatnonzero(mask)
    np.testing.assert_allclose(corr[np.ix_(keep, keep)], expected[np.ix_(keep, keep)], atol=1e-12)
    assert np.isnan(corr[LEAD["V3"]]).all() and np.isnan(corr[:, LEAD["V3"]]).all()


def test_noise_share_is_the_variance_beat_averaging_leaves():
    """Identical beats plus white noise of known variance: the share is noise / (beat + noise)."""
    rng = np.random.default_rng(1)
    rr, n_beats = 400, 12
    beat = np.exp(-0.5 * ((np.arange(rr) - 140) / 8.0) ** 2)  # an R wave 0.35 RR after the window start
    heart = np.tile(np.tile(beat, n_beats), (len(LEADS), 1))
    noise = 0.1 * rng.standard_normal(heart.shape)
    peaks = 140 + rr * np.arange(n_beats)
    share, _ = ecg_stats.beat_statistics(heart + noise, peaks)
    np.testing.assert_allclose(share, 0.01 / (beat.var() + 0.01), rtol=0.15)
    share, amplitude = ecg_stats.beat_statistics(heart, peaks)
    np.testing.assert_allclose(share, 0.0, atol=1e-12)
    np.testing.assert_allclose(amplitude, np.ptp(beat), rtol=1e-12)
    assert np.isnan(ecg_stats.beat_statistics(heart, peaks[:3])[0]).all()  # too few beats: no template


def test_delineated_intervals_match_the_generators_truth():
    """The delineator measures what the generator put there (per-record medians of lead II)."""
    batch = generate(SyntheticConfig(seed=3), np.arange(60), FS, noise=False)
    sinus = np.flatnonzero((batch.truth.rhythm == "sinus") & (batch.true_labels.sum(1) == 0))
    stats = ecg_stats.record_stats(batch.clean[sinus], batch.lead_mask[sinus], FS)
    truth = batch.truth
    assert np.median(np.abs(stats.heart_rate - truth.heart_rate_bpm[sinus])) < 2.0
    assert np.median(np.abs(stats.pr - truth.pr_interval_s[sinus])) < 0.015
    assert np.median(np.abs(stats.qrs - truth.qrs_duration_s[sinus])) < 0.015
    assert np.median(np.abs(stats.qt - truth.qt_interval_s[sinus])) < 0.03
    assert np.nanmax(stats.noise_share) < 0.05  # clean records: only rate variation is left


# -- the calibration ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real(request, tmp_path_factory) -> ecg_stats.RecordStats:
    root = SHARED_DATA / "ptbxl"
    if not (root / "ptbxl_database.csv").is_file():
        pytest.skip(f"real PTB-XL records {root} are absent (they sit beside the repository in CI)")
    cache = getattr(request.config, "cache", None)  # absent under -p no:cacheprovider
    cache_root = cache.mkdir("ecgbench-prepared") if cache is not None else tmp_path_factory.mktemp("prepared")
    signals, mask = ecg_stats.ptbxl_norm(root, FS, cache_root)
    return ecg_stats.record_stats(signals[::2][:N_REAL], mask[::2][:N_REAL], FS)


@pytest.fixture(scope="module")
def synthetic() -> ecg_stats.RecordStats:
    batch = generate(SyntheticConfig(), np.arange(N_SYNTHETIC), FS)
    normal = batch.true_labels.sum(1) == 0
    return ecg_stats.record_stats(batch.signals[normal], batch.lead_mask[normal], FS)


def test_inter_lead_correlations_are_within_0_6_of_real(real, synthetic):
    distance = ecg_stats.correlation_distance(real, synthetic)
    assert distance <= 0.6, f"Frobenius distance {distance:.2f} of the mean inter-lead correlation matrices"


@pytest.mark.parametrize("name", ["noise_share", "low_frequency"])
def test_each_leads_median_is_inside_the_real_interquartile_range(real, synthetic, name):
    low, high = np.nanpercentile(getattr(real, name), [25, 75], axis=0)
    median = np.nanmedian(getattr(synthetic, name), axis=0)
    inside = (low <= median) & (median <= high)
    assert inside.all(), {
        lead: f"median {m:.3f} not in the real IQR [{lo:.3f}, {hi:.3f}]"
        for lead, m, lo, hi, ok in zip(LEADS, median, low, high, inside)
        if not ok
    }


@pytest.mark.parametrize("name", ecg_stats.INTERVALS)
def test_interval_distributions_overlap(real, synthetic, name):
    """Each median lies inside the other's interquartile range."""
    r, s = getattr(real, name), getattr(synthetic, name)
    (r25, r50, r75), (s25, s50, s75) = np.nanpercentile(r, [25, 50, 75]), np.nanpercentile(s, [25, 50, 75])
    assert r25 <= s50 <= r75 and s25 <= r50 <= s75, (
        f"real {r25:.3f}/{r50:.3f}/{r75:.3f}, synthetic {s25:.3f}/{s50:.3f}/{s75:.3f}"
    )
