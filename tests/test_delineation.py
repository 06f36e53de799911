"""The suite's one ECG delineation (benchmark/data/delineation.py), shared by data preparation's
heart-rate check, the ECG statistics and the ecg_features baseline: its output on real LUDB
records is pinned (a change of NeuroKit or of the pipeline shows here first, not as a shifted
feature), checked against the cardiologists' R peaks, and it fails softly on leads without beats."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.data import conditioning, ecg_stats
from benchmark.data.delineation import WAVES, delineate

LUDB_FS = 500

#: lead II of LUDB records 1 and 2 (500 Hz), delineated when the helper was written (neurokit2 0.3.0)
PINNED = {
    "1": {
        "peaks": [663, 1343, 2001, 2644, 3314, 3970, 4626],
        "P_Onsets": [572, 1253, 1910, 2553, 3223, 3879, 4535],
        "R_Onsets": [638, 1318, 1983, 2622, 3289, 3945, 4605],
        "R_Offsets": [688, 1368, 2026, 2669, 3339, 3995, 4651],
        "T_Offsets": [883, 1576, 2228, 2875, 3544, 4198, 4855],
    },
    "2": {
        "peaks": [570, 1015, 1460, 1911, 2370, 2826, 3284, 3753, 4218, 4689],
        "P_Onsets": [450, 896, 1343, 1795, 2253, 2713, 3168, 3635, 4098, 4574],
        "R_Onsets": [545, 994, 1435, 1889, 2345, 2801, 3260, 3731, 4195, 4666],
        "R_Offsets": [583, 1029, 1473, 1924, 2383, 2840, 3298, 3767, 4232, 4702],
        "T_Offsets": [760, 1204, 1649, 2101, 2559, 3019, 3476, 3942, 4409, 4878],
    },
}


def ludb_lead_ii(shared_data, record: str):
    wfdb = pytest.importorskip("wfdb")
    path = shared_data / "ludb" / "data" / record
    if not path.with_suffix(".hea").is_file():
        pytest.skip(f"LUDB record {path} is absent")
    ecg = wfdb.rdrecord(str(path))
    assert ecg.fs == LUDB_FS
    return ecg.p_signal[:, ecg.sig_name.index("ii")], wfdb.rdann(str(path), "ii")


@pytest.mark.parametrize("record", sorted(PINNED))
def test_ludb_lead_ii_delineation_is_pinned_and_agrees_with_the_experts_r_peaks(shared_data, record):
    lead, annotation = ludb_lead_ii(shared_data, record)
    beats = delineate(lead, LUDB_FS)
    pinned = PINNED[record]
    assert beats.peaks.dtype == np.int64 and beats.peaks.tolist() == pinned["peaks"]
    assert beats.waves is not None and set(beats.waves) == set(WAVES)
    for name in ("P_Onsets", "R_Onsets", "R_Offsets", "T_Offsets"):
        assert np.array_equal(beats.waves[name], np.array(pinned[name], dtype=float)), name
    assert all(len(values) == len(beats.peaks) for values in beats.waves.values())
    # the cardiologists' QRS marks (LUDB annotates the middle of the records): each lies within
    # 4 ms of a detected R peak
    expert = np.array([sample for symbol, sample in zip(annotation.symbol, annotation.sample) if symbol == "N"])
    assert len(expert) >= 5
    assert np.abs(expert[:, None] - beats.peaks[None, :]).min(axis=1).max() <= 0.004 * LUDB_FS


def test_the_three_users_read_the_same_beats(shared_data):
    """The heart-rate check of preparation and the ECG statistics report what the helper found."""
    lead, _ = ludb_lead_ii(shared_data, "1")
    beats = delineate(lead, LUDB_FS)
    rate, found = conditioning._heart_rate(lead, float(LUDB_FS))
    assert found == len(beats.peaks) and rate == beats.heart_rate_bpm(LUDB_FS)
    peaks, intervals = ecg_stats.rhythm_lead_waves(lead, LUDB_FS)
    assert peaks.tolist() == beats.peaks.tolist() and intervals["heart_rate"] == rate
    assert intervals["qrs"] == np.median(np.array(PINNED["1"]["R_Offsets"]) - PINNED["1"]["R_Onsets"]) / LUDB_FS


def test_peaks_only_and_search_limits(shared_data):
    lead, _ = ludb_lead_ii(shared_data, "1")
    only_peaks = delineate(lead, LUDB_FS, min_peaks=None)
    assert only_peaks.waves is None and only_peaks.peaks.tolist() == PINNED["1"]["peaks"]
    assert delineate(lead, LUDB_FS, min_peaks=len(PINNED["1"]["peaks"]) + 1).waves is None
    narrow = delineate(lead, LUDB_FS, max_pr_ms=20.0)  # P onsets can no longer be 130 ms before QRS
    assert narrow.waves is not None and not np.array_equal(narrow.waves["P_Onsets"], PINNED["1"]["P_Onsets"])


@pytest.mark.parametrize("lead", [np.zeros(5000), np.zeros(3)], ids=["flat", "three samples"])
def test_a_lead_without_beats_gives_no_peaks_instead_of_an_error(lead):
    beats = delineate(lead, LUDB_FS)
    assert len(beats.peaks) == 0 and beats.waves is None and np.isnan(beats.heart_rate_bpm(LUDB_FS))
