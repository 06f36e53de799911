"""The synthetic default against real ECGs (issues 15 and 21), and the statistics that compare them.

The statistics (benchmark/data/ecg_stats.py) are first checked on signals whose answer is known.
Then the calibration is tested out of sample: the generator was fitted to the PTB-XL NORM records
with ecg_id 1-500 (``../shared/data/ptbxl``), and its normal records are compared, at the
benchmark's 100 Hz, with the NORM records 501-999 of ``../shared/data/ptbxl1000`` that the fit never
saw, beside the distance between the two real halves. In-sample checks on the fit half (500 Hz)
follow, marked as such. The prepared PTB-XL records are kept in pytest's cache folder, so only the
first run prepares them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import wfdb
from conftest import SHARED_DATA

from benchmark.data import ecg_stats
from benchmark.data.contract import LEADS
from ecgbench_datasets.synthetic import SyntheticConfig, generate

pytest.importorskip("neurokit2", reason="the ECG delineator: pip install neurokit2")

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


def ludb_expert_intervals(record: str) -> tuple[float, float, float]:
    """Per-record median PR, QRS and QT (s) of lead ii from LUDB's expert wave annotations
    (``(`` onset, ``p``/``N``/``t`` peak, ``)`` offset)."""
    annotation = wfdb.rdann(str(SHARED_DATA / "ludb" / "data" / record), "ii")
    onsets: dict[str, list[int]] = {}
    offsets: dict[str, list[int]] = {}
    symbols, samples = annotation.symbol, annotation.sample
    for i in range(1, len(symbols) - 1):
        if symbols[i] in "pNt" and symbols[i - 1] == "(" and symbols[i + 1] == ")":
            onsets.setdefault(symbols[i], []).append(samples[i - 1])
            offsets.setdefault(symbols[i], []).append(samples[i + 1])
    qrs_on, qrs_off = np.array(onsets["N"]), np.array(offsets["N"])
    p_on, t_off = np.array(onsets.get("p", [])), np.array(offsets.get("t", []))
    pr = [q - p_on[p_on < q].max() for q in qrs_on if (p_on < q).any() and q - p_on[p_on < q].max() < 0.6 * FS]
    qt = [t_off[t_off > q].min() - q for q in qrs_on if (t_off > q).any() and t_off[t_off > q].min() - q < 0.7 * FS]
    return np.median(pr) / FS, np.median(qrs_off - qrs_on) / FS, np.median(qt) / FS


def test_delineator_agrees_with_ludb_experts():
    """The accuracy ecg_stats' docstring states: per-record medians of lead II against LUDB's
    cardiologists, on its first 40 sinus-rhythm records (500 Hz)."""
    if not (SHARED_DATA / "ludb" / "ludb.csv").is_file():
        pytest.skip(f"LUDB {SHARED_DATA / 'ludb'} is absent (it sits beside the repository in CI)")
    table = pd.read_csv(SHARED_DATA / "ludb" / "ludb.csv")
    sinus = table.ID[table.Rhythms.str.strip().str.startswith("Sinus")].astype(str).tolist()[:40]
    expert = np.array([ludb_expert_intervals(record) for record in sinus])
    measured = []
    for record in sinus:
        ecg = wfdb.rdrecord(str(SHARED_DATA / "ludb" / "data" / record))
        intervals = ecg_stats.rhythm_lead_waves(ecg.p_signal[:, ecg.sig_name.index("ii")], FS)[1]
        measured.append([intervals[k] for k in ("pr", "qrs", "qt")])
    measured = np.array(measured)
    error = np.nanmedian(np.abs(measured - expert), axis=0)
    assert np.isfinite(measured).mean() > 0.95
    assert error[0] < 0.012 and error[1] < 0.022 and error[2] < 0.02, dict(zip(("PR", "QRS", "QT"), error))


# -- the calibration: fitted on records 1-500, tested on 501-999 ----------------------------------
def norm_records(request, tmp_path_factory, folder: str, fs: int) -> ecg_stats.NormRecords:
    root = SHARED_DATA / folder
    if not (root / "ptbxl_database.csv").is_file():
        pytest.skip(f"real PTB-XL records {root} are absent (they sit beside the repository in CI)")
    cache = getattr(request.config, "cache", None)  # absent under -p no:cacheprovider
    cache_root = cache.mkdir("ecgbench-prepared") if cache is not None else tmp_path_factory.mktemp("prepared")
    return ecg_stats.ptbxl_norm(root, fs, cache_root)


def synthetic_normal(fs: int) -> tuple[ecg_stats.RecordStats, np.ndarray]:
    """The statistics of the synthetic default's normal records among the first N_SYNTHETIC, and
    their patients."""
    config = SyntheticConfig()
    batch = generate(config, np.arange(N_SYNTHETIC), fs)
    normal = batch.true_labels.sum(1) == 0
    patients = (np.arange(N_SYNTHETIC) // config.records_per_patient)[normal].astype(str)
    return ecg_stats.record_stats(batch.signals[normal], batch.lead_mask[normal], fs), patients


def medians_outside(
    real: ecg_stats.RecordStats, synthetic: ecg_stats.RecordStats, name: str, range_pct: tuple[int, int]
) -> dict[str, str]:
    """The leads whose synthetic median of ``name`` lies outside the real records' percentile range."""
    low, high = np.nanpercentile(getattr(real, name), range_pct, axis=0)
    median = np.nanmedian(getattr(synthetic, name), axis=0)
    return {
        lead: f"median {m:.3f} not in the real {range_pct[0]}-{range_pct[1]} % range [{lo:.3f}, {hi:.3f}]"
        for lead, m, lo, hi in zip(LEADS, median, low, high)
        if not lo <= m <= hi
    }


@pytest.fixture(scope="module")
def fit_half(request, tmp_path_factory) -> ecg_stats.RecordStats:
    """The records the generator was fitted to (PTB-XL NORM, ecg_id 1-500), every other one, 500 Hz."""
    records = norm_records(request, tmp_path_factory, "ptbxl", FS)
    return ecg_stats.record_stats(records.signals[::2][:N_REAL], records.lead_mask[::2][:N_REAL], FS)


@pytest.fixture(scope="module")
def synthetic() -> ecg_stats.RecordStats:
    return synthetic_normal(FS)[0]


@pytest.fixture(scope="module")
def held_out(request, tmp_path_factory):
    """At the benchmark's 100 Hz: the real NORM records of ``ptbxl1000`` the fit never saw (ecg_id
    501-999, patients not in the fit half), every other record of the fit half, and the synthetic
    normal records, each with its patients."""
    fit, held = norm_records(request, tmp_path_factory, "ptbxl1000", 100).halves()
    fit = fit.part(np.arange(0, len(fit.ecg_ids), 2))
    synthetic, patients = synthetic_normal(100)
    return (
        (ecg_stats.record_stats(held.signals, held.lead_mask, 100), held.patient_ids),
        (ecg_stats.record_stats(fit.signals, fit.lead_mask, 100), fit.patient_ids),
        (synthetic, patients),
    )


def test_held_out_real_records_are_no_farther_from_the_synthetic_than_from_the_fit_half(held_out):
    """The inter-lead correlation test out of sample: the synthetic records' distance to real NORM
    records the fit never saw is at most the upper 95 % bootstrap bound of the distance between the
    two real halves (measured: synthetic 0.92 [0.68, 1.43], real fit half 1.04 [0.69, 1.54]; random
    halves of the held-out records alone 0.48 [0.30, 0.70], 5-95 %: the records 501-999 differ from
    1-500 by more than sampling)."""
    (held, held_patients), (fit, fit_patients), (synthetic, patients) = held_out
    generated = ecg_stats.distance_with_ci(synthetic, held, patients, held_patients, n_resamples=300)
    real = ecg_stats.distance_with_ci(fit, held, fit_patients, held_patients, n_resamples=300)
    floor = np.percentile(ecg_stats.split_half_distances(held, held_patients, 100), [5, 50, 95])
    assert generated.value <= real.ci[1], f"synthetic {generated}, real fit half {real}, split-half floor {floor}"


@pytest.mark.parametrize("name", ["noise_share", "low_frequency"])
def test_each_leads_median_is_inside_the_held_out_real_interdecile_range(held_out, name):
    """Out of sample at 100 Hz each lead's synthetic median lies within the held-out records' 10-90 %
    range (inside the interquartile range too, except the noise share of V3 and V4, 0.073 and 0.074
    against lower quartiles of 0.074 and 0.079)."""
    (held, _), _, (synthetic, _) = held_out
    outside = medians_outside(held, synthetic, name, (10, 90))
    assert not outside, outside


@pytest.mark.parametrize("name", ecg_stats.INTERVALS)
def test_interval_distributions_overlap_the_held_out_records(held_out, name):
    """Each median lies inside the other's interquartile range, out of sample at 100 Hz."""
    (held, _), _, (synthetic, _) = held_out
    r, s = getattr(held, name), getattr(synthetic, name)
    (r25, r50, r75), (s25, s50, s75) = np.nanpercentile(r, [25, 50, 75]), np.nanpercentile(s, [25, 50, 75])
    assert r25 <= s50 <= r75 and s25 <= r50 <= s75, (
        f"real {r25:.3f}/{r50:.3f}/{r75:.3f}, synthetic {s25:.3f}/{s50:.3f}/{s75:.3f}"
    )


# -- in sample: how closely the fit half is matched (not a test of generalisation) ------------------
def test_the_fit_half_is_matched_within_0_6_in_sample(fit_half, synthetic):
    """The generator's fit on the records it was fitted to (500 Hz): a guard against a change that
    degrades the fit; out-of-sample evidence is the held-out test above."""
    distance = ecg_stats.correlation_distance(fit_half, synthetic)
    assert distance <= 0.6, f"Frobenius distance {distance:.2f} of the mean inter-lead correlation matrices"


@pytest.mark.parametrize("name", ["noise_share", "low_frequency"])
def test_each_leads_median_is_inside_the_fit_halfs_interquartile_range(fit_half, synthetic, name):
    outside = medians_outside(fit_half, synthetic, name, (25, 75))
    assert not outside, outside
