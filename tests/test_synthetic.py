"""The synthetic dataset: physics (lead identities), labels that are visible on the signal,
determinism, patient-disjoint splits and the plugin's cache.

Label features are measured on the generated signals with simple signal processing (R peaks,
signal-averaged median beats, spatial velocity), the way an ECG machine measures them; ground
truth is used only to align beats and to check the measurements' accuracy.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy.signal import find_peaks

from benchmark.data.contract import LEADS, DataError, ECGArrays
from benchmark.data.icd import icd_description, icd_level, is_valid_code
from benchmark.registry import DATASETS
from ecgbench_datasets.synthetic import (
    CONDITION_CODES,
    LBBB,
    LVH,
    RBBB,
    SyntheticConfig,
    SyntheticECG,
    config_hash,
    generate,
    record_splits,
)

FS = 250
CONFIG = SyntheticConfig(seed=7, n_patients=600, records_per_patient=2)
LEAD = {name: i for i, name in enumerate(LEADS)}
INDEPENDENT = [LEAD[name] for name in ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")]
BEFORE, AFTER = 0.45, 0.6  # median-beat window around the QRS onset, s


@pytest.fixture(scope="module")
def batch():
    return generate(CONFIG, np.arange(CONFIG.n_records), FS, noise=False)


@pytest.fixture(scope="module")
def has(batch):
    return {code: batch.true_labels[:, j].astype(bool) for j, code in enumerate(CONDITION_CODES)}


# -- measurement helpers -----------------------------------------------------------------------
def spatial_velocity(signal: np.ndarray) -> np.ndarray:
    return np.sqrt((np.diff(signal[INDEPENDENT], axis=1) ** 2).sum(0)) * FS


def r_peaks(signal: np.ndarray) -> np.ndarray:
    """QRS complexes: peaks of the 100 ms-smoothed spatial velocity (QRS slopes dwarf P and T)."""
    width = int(0.1 * FS)
    envelope = np.convolve(spatial_velocity(signal), np.ones(width) / width, mode="same")
    return find_peaks(envelope, height=0.3 * envelope.max(), distance=int(0.25 * FS))[0]


def median_beat(signal: np.ndarray, onsets: np.ndarray, premature: np.ndarray) -> np.ndarray:
    """Signal-averaged conducted beat (12, L), aligned on the QRS onsets."""
    length = int(round((BEFORE + AFTER) * FS))
    starts = np.round((onsets[np.isfinite(onsets) & ~premature] - BEFORE) * FS).astype(int)
    starts = starts[(starts >= 0) & (starts + length <= signal.shape[1])]
    return np.median(np.stack([signal[:, s : s + length] for s in starts]), axis=0)


def qrs_bounds(beat: np.ndarray, frac: float = 0.1, gap_s: float = 0.03) -> tuple[float, float]:
    """QRS onset and end (s from the nominal onset): the run of spatial velocity above ``frac``
    of its peak that contains the peak, bridging dips shorter than ``gap_s`` (e.g. at the R top)."""
    lo = int((BEFORE - 0.05) * FS)
    v = spatial_velocity(beat)[lo : int((BEFORE + 0.22) * FS)]
    above, gap, peak = v > frac * v.max(), int(gap_s * FS), int(np.argmax(v))
    start = end = peak
    while start > 0 and above[max(0, start - gap) : start].any():
        start -= 1
    while end < len(v) - 1 and above[end + 1 : end + 1 + gap].any():
        end += 1
    return (lo + start) / FS - BEFORE, (lo + end + 1) / FS - BEFORE


def p_onset(beat: np.ndarray, qrs_onset: float) -> float:
    """Onset of the spatial-magnitude hump nearest before the QRS (the P wave), at 13.5 % of
    its peak (a Gaussian's value 2 widths from its centre, the generator's onset convention)."""
    magnitude = np.sqrt((beat[INDEPENDENT] ** 2).sum(0))
    start = int(round((BEFORE + qrs_onset - 0.40) * FS))
    segment = magnitude[start : int(round((BEFORE + qrs_onset - 0.01) * FS))]
    peak = find_peaks(segment, prominence=0.02)[0][-1]
    below = np.flatnonzero(segment[:peak] < 0.135 * segment[peak])
    return (start + (below[-1] + 1 if len(below) else 0)) / FS - BEFORE


def sample_at(beat: np.ndarray, t: float) -> np.ndarray:
    return beat[:, int(round((BEFORE + t) * FS))]


@pytest.fixture(scope="module")
def measured(batch):
    """Per record: QRS width, PR interval (sinus), ST deviation at J+60 ms, RR CV, heart rate."""
    truth, n = batch.truth, len(batch.record_ids)
    out = {key: np.full(n, np.nan) for key in ("qrs", "pr", "rr_cv", "heart_rate")}
    out["st"] = np.zeros((n, len(LEADS)))
    for r in range(n):
        beat = median_beat(batch.clean[r], truth.qrs_onsets_s[r], truth.premature[r])
        onset, end = qrs_bounds(beat)
        out["qrs"][r] = end - onset
        if truth.rhythm[r] == "sinus":
            out["pr"][r] = onset - p_onset(beat, onset)
        out["st"][r] = sample_at(beat, end + 0.06) - sample_at(beat, onset - 0.016)  # vs PR segment
        rr = np.diff(r_peaks(batch.clean[r])) / FS
        out["rr_cv"][r], out["heart_rate"][r] = rr.std() / rr.mean(), 60 / np.median(rr)
    return out


# -- physics -----------------------------------------------------------------------------------
def test_lead_identities_are_exact_before_and_after_noise():
    noisy = generate(CONFIG, np.arange(40), 500)
    for signals in (noisy.clean, noisy.signals):
        x = {name: signals[:, LEAD[name]].astype(np.float64) for name in LEADS}
        for derived, formula in (
            ("III", x["II"] - x["I"]),
            ("aVR", -(x["I"] + x["II"]) / 2),
            ("aVL", x["I"] - x["II"] / 2),
            ("aVF", x["II"] - x["I"] / 2),
        ):
            assert np.abs(x[derived] - formula).max() <= 1e-6, derived
        assert np.abs(x["aVR"] + x["aVL"] + x["aVF"]).max() <= 1e-6
    assert not np.array_equal(noisy.clean, noisy.signals)


def test_amplitudes_and_intervals_are_physiological(batch, measured):
    peak_to_peak = batch.clean.max(axis=2) - batch.clean.min(axis=2)
    assert 0.8 < np.median(peak_to_peak[:, LEAD["II"]]) < 2.5
    assert 1.0 < np.median(peak_to_peak[:, LEAD["V5"]]) < 3.0
    assert np.abs(batch.clean).max() < 8.0
    truth = batch.truth
    sinus = truth.rhythm == "sinus"
    assert np.all((truth.heart_rate_bpm[sinus] >= 45) & (truth.heart_rate_bpm[sinus] <= 115))
    assert np.nanpercentile(np.abs(measured["pr"] - truth.pr_interval_s), 95) < 0.025
    assert np.percentile(np.abs(measured["qrs"] - truth.qrs_duration_s), 90) < 0.025


# -- each label's defining feature, measured -------------------------------------------------
def test_atrial_fibrillation_has_irregular_rr_and_f_waves(batch, has, measured):
    regular = (batch.truth.rhythm == "sinus") & ~has["I493"]
    assert np.percentile(measured["rr_cv"][has["I48"]], 5) > 0.1
    assert np.percentile(measured["rr_cv"][regular], 95) < 0.06
    assert np.isnan(batch.truth.pr_interval_s[has["I48"]]).all()  # no P waves

    # f waves: dominant frequency of V1 in the T-Q intervals (atrial activity alone)
    dominant = []
    for r in np.flatnonzero(has["I48"]):
        v1, onsets = batch.clean[r, LEAD["V1"]], batch.truth.qrs_onsets_s[r]
        quiet = np.ones(len(v1), bool)
        for onset in onsets[np.isfinite(onsets)]:
            t_end = onset + batch.truth.qt_interval_s[r] + 0.08
            quiet[max(int((onset - 0.06) * FS), 0) : max(int(t_end * FS), 0)] = False
        edges = np.flatnonzero(np.diff(np.r_[0, quiet.astype(int), 0])).reshape(-1, 2)
        spectra = [
            np.abs(np.fft.rfft(np.hanning(e - a) * (v1[a:e] - v1[a:e].mean()), 2 * FS)) ** 2
            for a, e in edges
            if e - a >= 0.2 * FS
        ]
        if spectra:
            freqs = np.fft.rfftfreq(2 * FS, 1 / FS)
            band = (freqs >= 2) & (freqs <= 15)
            dominant.append(freqs[band][np.argmax(np.mean(spectra, axis=0)[band])])
    assert len(dominant) > 50
    assert np.mean((np.array(dominant) >= 4) & (np.array(dominant) <= 9)) > 0.85


def test_first_degree_av_block_has_pr_over_200_ms(has, measured):
    assert np.mean(measured["pr"][has["I440"]] > 0.2) > 0.95
    other_sinus = ~has["I440"] & np.isfinite(measured["pr"])
    assert np.mean(measured["pr"][other_sinus] < 0.2) > 0.93


def test_bundle_branch_blocks_are_wide_with_their_own_morphology(batch, has, measured):
    narrow = ~(has["I447"] | has["I451"]) & ~has["I493"]
    for code in ("I447", "I451"):
        assert np.median(measured["qrs"][has[code]]) >= 0.12
        assert np.mean(measured["qrs"][has[code]] >= 0.11) > 0.85
    assert np.mean(measured["qrs"][narrow] < 0.12) > 0.95

    def terminal_area(r: int, lead: str) -> float:  # mean of the last 40 ms of the QRS
        beat = median_beat(batch.clean[r], batch.truth.qrs_onsets_s[r], batch.truth.premature[r])
        _, end = qrs_bounds(beat)
        return beat[LEAD[lead], int((BEFORE + end - 0.04) * FS) : int((BEFORE + end) * FS)].mean()

    lbbb, rbbb = np.flatnonzero(has["I447"])[:40], np.flatnonzero(has["I451"])[:40]
    # RBBB: late rightward-anterior forces = R' in V1, wide S in I and V6
    assert np.mean([terminal_area(r, "V1") > 0 for r in rbbb]) > 0.9
    assert np.mean([terminal_area(r, "I") < 0 and terminal_area(r, "V6") < 0 for r in rbbb]) > 0.75
    # LBBB: leftward-posterior depolarisation = QS in V1, broad R without S in I/V6
    assert np.mean([terminal_area(r, "V1") < 0 and terminal_area(r, "V6") > 0 for r in lbbb]) > 0.9


def test_stemi_st_elevation_is_in_its_own_territory(batch, has, measured):
    st = measured["st"]
    anterior = (st[:, [LEAD[v] for v in ("V1", "V2", "V3", "V4")]] >= 0.1).sum(1) >= 2
    inferior = (st[:, [LEAD[v] for v in ("II", "III", "aVF")]] >= 0.1).sum(1) >= 2
    measurable = batch.truth.rhythm != "svt"  # at >150 bpm J+60 ms is already on the T wave
    ant, inf = has["I210"] & measurable, has["I211"] & measurable
    assert anterior[ant].mean() > 0.9 and inferior[ant].mean() < 0.25
    assert inferior[inf].mean() > 0.9 and anterior[inf].mean() < 0.25
    assert np.mean(st[inf, LEAD["aVL"]] < 0) > 0.9  # reciprocal depression
    mean_anterior = st[:, LEAD["V1"] : LEAD["V4"] + 1].mean(1)
    mean_inferior = st[:, [LEAD["II"], LEAD["III"], LEAD["aVF"]]].mean(1)
    assert np.mean(mean_anterior[ant] > mean_inferior[ant]) > 0.9
    assert np.mean(mean_inferior[inf] > mean_anterior[inf]) > 0.9
    control = measurable & ~(has["I210"] | has["I211"] | has["I447"] | has["I451"] | has["I517"])
    assert inferior[control].mean() < 0.05 and anterior[control].mean() < 0.15
    assert np.corrcoef(st[measurable].ravel(), batch.truth.st_offset_mv[measurable].ravel())[0, 1] > 0.8


def test_lvh_has_high_qrs_voltage_and_lateral_strain(batch, has, measured):
    beat_max = batch.clean.max(axis=2)
    sokolow_lyon = -batch.clean[:, LEAD["V1"]].min(axis=1) + beat_max[:, [LEAD["V5"], LEAD["V6"]]].max(axis=1)
    normal = batch.true_labels.sum(1) == 0
    assert np.mean(sokolow_lyon[has["I517"]] >= 3.5) > 0.4
    assert np.mean(sokolow_lyon[normal] >= 3.5) < 0.08
    lateral_st = measured["st"][:, [LEAD["V5"], LEAD["V6"]]].mean(1)
    lvh_only = has["I517"] & ~has["I210"] & ~has["I211"]
    assert np.median(lateral_st[lvh_only]) < -0.02 < 0 < np.median(lateral_st[normal])


def test_svt_is_a_regular_narrow_tachycardia_over_150(batch, has, measured):
    assert measured["heart_rate"][has["I471"]].min() > 150
    assert measured["rr_cv"][has["I471"]].max() < 0.06
    assert np.all(batch.truth.qrs_duration_s[has["I471"]] < 0.12)
    assert np.mean(measured["qrs"][has["I471"]] < 0.12) > 0.9  # at 200 bpm the T wave nearly touches J
    regular_sinus = (batch.truth.rhythm == "sinus") & ~has["I493"]
    assert measured["heart_rate"][regular_sinus].max() < 125


def test_ventricular_premature_beats_are_wide_and_early(batch, has):
    def wide_premature_beats(r: int) -> int:
        peaks = r_peaks(batch.clean[r])
        rr = np.diff(peaks) / FS
        velocity, count = spatial_velocity(batch.clean[r]), 0
        for j in np.flatnonzero(rr < 0.85 * np.median(rr)) + 1:
            lo, hi = peaks[j] - int(0.15 * FS), peaks[j] + int(0.15 * FS)
            if lo >= 0 and hi <= len(velocity):
                above = np.flatnonzero(velocity[lo:hi] > 0.1 * velocity[lo:hi].max())
                count += (above[-1] - above[0]) / FS >= 0.12
        return count

    sinus = batch.truth.rhythm == "sinus"
    assert np.mean([wide_premature_beats(r) >= 1 for r in np.flatnonzero(has["I493"] & sinus)]) > 0.9
    assert np.mean([wide_premature_beats(r) >= 1 for r in np.flatnonzero(~has["I493"] & sinus)[:300]]) < 0.02


# -- labels, determinism, splits ---------------------------------------------------------------
def test_condition_codes_are_real_icd10cm_codes_without_dots():
    assert all(is_valid_code(code) and "." not in code for code in CONDITION_CODES)
    assert icd_description("I451") == "Other and unspecified right bundle-branch block"
    assert icd_description("I517") == "Cardiomegaly"  # ICD-10-CM's home of ventricular hypertrophy


def test_prevalences_and_exclusions(batch, has):
    prevalence = batch.true_labels.mean(0)
    assert np.all((prevalence >= 0.05) & (prevalence <= 0.2)), dict(zip(CONDITION_CODES, prevalence))
    for a, b in (
        ("I48", "I440"),
        ("I48", "I471"),
        ("I447", "I451"),
        ("I471", "I447"),
        ("I471", "I451"),
        ("I210", "I211"),
        ("I447", "I210"),
        ("I447", "I211"),
        ("I447", "I517"),
        ("I471", "I493"),
    ):
        assert not np.any(has[a] & has[b]), (a, b)
    assert 0.3 < np.mean(batch.true_labels.sum(1) == 0) < 0.6
    assert np.mean(batch.true_labels.sum(1) >= 2) > 0.05  # comorbidity exists
    np.testing.assert_array_equal(batch.labels, batch.true_labels)  # label_noise defaults to 0


def test_label_noise_flips_at_the_configured_rate():
    noisy = generate(dataclasses.replace(CONFIG, label_noise=0.1), np.arange(500), 50, noise=False)
    clean = generate(CONFIG, np.arange(500), 50, noise=False)
    np.testing.assert_array_equal(noisy.true_labels, clean.true_labels)
    assert 0.08 < np.mean(noisy.labels != noisy.true_labels) < 0.12


def test_records_do_not_depend_on_chunking_order_or_noise():
    config = dataclasses.replace(CONFIG, artefact_probability=0.5, lead_off_probability=0.3, label_noise=0.1)
    indices = np.arange(90)
    whole = generate(config, indices, 100)
    chunks = [generate(config, indices[s : s + 13], 100) for s in range(0, 90, 13)]
    shuffled_order = np.random.default_rng(0).permutation(90)
    shuffled = generate(config, indices[shuffled_order], 100)
    for field in ("signals", "clean", "lead_mask", "labels", "patient_ids"):
        full = getattr(whole, field)
        np.testing.assert_array_equal(full, np.concatenate([getattr(c, field) for c in chunks]), err_msg=field)
        np.testing.assert_array_equal(full[shuffled_order], getattr(shuffled, field), err_msg=field)
    # the heart does not depend on the noise switch or on fs; the seed changes everything
    np.testing.assert_array_equal(generate(config, indices[:10], 100, noise=False).clean, whole.clean[:10])
    np.testing.assert_array_equal(generate(config, indices[:10], 500, noise=False).clean[:, :, ::5], whole.clean[:10])
    other_seed = generate(dataclasses.replace(config, seed=8), indices[:10], 100)
    assert not np.array_equal(other_seed.signals, whole.signals[:10])


def test_patients_share_morphology_across_their_records():
    two = generate(CONFIG, np.arange(200), 100, noise=False)
    same = two.patient_ids[0::2] == two.patient_ids[1::2]
    assert same.all()
    chronic = [LBBB, RBBB, LVH]
    np.testing.assert_array_equal(two.true_labels[0::2][:, chronic], two.true_labels[1::2][:, chronic])
    np.testing.assert_allclose(two.truth.qrs_duration_s[0::2], two.truth.qrs_duration_s[1::2])


def test_splits_are_patient_disjoint_exact_and_deterministic():
    splits = record_splits(CONFIG)
    patients = {name: set((idx // CONFIG.records_per_patient).tolist()) for name, idx in splits.items()}
    assert not patients["train"] & patients["val"] and not patients["train"] & patients["test"]
    assert not patients["val"] & patients["test"]
    assert not patients["pretrain"] & (patients["val"] | patients["test"])
    assert patients["train"] <= patients["pretrain"]
    assert patients["pretrain"] | patients["val"] | patients["test"] == set(range(CONFIG.n_patients))
    assert [len(patients[k]) for k in ("pretrain", "train", "val", "test")] == [420, 180, 60, 120]
    for name, idx in record_splits(CONFIG).items():
        np.testing.assert_array_equal(idx, splits[name])


def test_powerline_only_below_nyquist():
    quiet = dict(baseline_wander_mv=0.0, emg_mv=0.0, artefact_probability=0.0, lead_off_probability=0.0)
    for hz in (50, 60):
        config = dataclasses.replace(CONFIG, powerline_hz=hz, **quiet)
        at_100 = generate(config, np.arange(5), 100)
        np.testing.assert_array_equal(at_100.signals, at_100.clean)  # 50/60 Hz would alias at 100 Hz
        at_500 = generate(config, np.arange(5), 500)
        residual = (at_500.signals - at_500.clean)[:, LEAD["I"]]
        spectrum = np.abs(np.fft.rfft(residual, axis=-1)).mean(0)
        assert abs(np.fft.rfftfreq(residual.shape[-1], 1 / 500)[np.argmax(spectrum)] - hz) < 0.5


def test_lead_off_masks_and_flattens_one_precordial_lead():
    batch = generate(dataclasses.replace(CONFIG, lead_off_probability=1.0), np.arange(20), 100)
    assert np.all((~batch.lead_mask).sum(1) == 1) and batch.lead_mask[:, : LEAD["V1"]].all()
    assert np.all(batch.signals[~batch.lead_mask] == 0)
    assert generate(dataclasses.replace(CONFIG, lead_off_probability=0.0), np.arange(20), 100).lead_mask.all()


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(seed=-1), "seed"),
        (dict(records_per_patient=0), "records_per_patient"),
        (dict(duration_s=1.0), "duration_s"),
        (dict(emg_mv=-0.1), "emg_mv"),
        (dict(powerline_hz=55), "powerline_hz"),
        (dict(label_noise=0.5), "label_noise"),
        (dict(artefact_probability=1.5), "artefact_probability"),
        (dict(train_fraction=0.5), "sum to 1"),
        (dict(n_patients=3), "without patients"),
    ],
)
def test_config_validation(bad, message):
    with pytest.raises(ValueError, match=message):
        SyntheticConfig(**bad)


def test_generate_rejects_bad_inputs():
    with pytest.raises(ValueError, match="fs"):
        generate(CONFIG, [0], 20)
    with pytest.raises(ValueError, match="indices"):
        generate(CONFIG, [CONFIG.n_records], 100)


# -- the plugin --------------------------------------------------------------------------------
def test_plugin_caches_and_reloads_identical_arrays(tmp_path, monkeypatch):
    assert DATASETS.get("synthetic") is SyntheticECG
    config = SyntheticConfig(n_patients=30, records_per_patient=2, seed=3)
    plugin = SyntheticECG(config)
    arrays = plugin.load(100, "conditions", tmp_path, progress=False)
    directory = tmp_path / "synthetic" / f"{config_hash(config)}-fs100"
    assert (directory / "meta.json").is_file()
    assert arrays.signals.dtype == np.float16 and isinstance(arrays.signals, np.memmap)
    assert arrays.label_names == list(CONDITION_CODES) and arrays.signals.shape == (60, 12, 1000)
    expected = generate(config, np.arange(60), 100)
    np.testing.assert_array_equal(arrays.signals, expected.signals.astype(np.float16))
    np.testing.assert_array_equal(arrays.labels, expected.labels)
    np.testing.assert_array_equal(arrays.lead_mask, expected.lead_mask)
    np.testing.assert_array_equal(arrays.patient_ids, expected.patient_ids)
    test_patients = set(arrays.patient_ids[arrays.splits["test"]].tolist())
    assert test_patients.isdisjoint(arrays.patient_ids[arrays.splits["pretrain"]].tolist())

    import ecgbench_datasets.synthetic as module  # the second load must not generate again

    monkeypatch.setattr(module, "generate", lambda *a, **k: pytest.fail("cache was not reused"))
    again = plugin.load(100, "conditions", tmp_path, progress=False)
    np.testing.assert_array_equal(again.signals, arrays.signals)
    assert SyntheticECG(dataclasses.replace(config, seed=4)).cache_dir(100, tmp_path) != directory

    with pytest.raises(DataError, match="label set"):
        plugin.load(100, "snomed", tmp_path, progress=False)


def test_icd_label_set_adds_consistent_ancestors(tmp_path):
    plugin = SyntheticECG(SyntheticConfig(n_patients=60, records_per_patient=1))
    arrays = plugin.load(100, "icd", tmp_path, progress=False)
    assert isinstance(arrays, ECGArrays)
    names = arrays.label_names
    assert names[0] == "IX" and set(CONDITION_CODES) <= set(names)
    assert {"IX.I30-I5A", "IX.I20-I25", "I44", "I45", "I21", "I47", "I49", "I51"} <= set(names)
    assert {icd_level(name) for name in names} == {"chapter", "block", "category", "subcategory"}
    labels = dict(zip(names, arrays.labels.T))
    for name, parents in arrays.label_parents.items():
        for parent in parents:
            assert np.all(labels[parent] >= labels[name]), (name, parent)
    np.testing.assert_array_equal(labels["IX"], arrays.labels[:, [names.index(c) for c in CONDITION_CODES]].max(1))
    assert labels["I21"].tolist() == np.maximum(labels["I210"], labels["I211"]).tolist()
    assert arrays.label_descriptions["I517"] == "Cardiomegaly"
