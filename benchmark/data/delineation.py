"""One ECG delineation for the whole suite: clean a lead, find its R peaks, delineate its waves.

Three parts of the suite measure beats: the plausibility check of data preparation (heart rate,
``benchmark/data/conditioning.py``), the statistics that compare the synthetic generator with real
ECGs (``benchmark/data/ecg_stats.py``) and the ``ecg_features`` baseline (``methods/ecg_features.py``,
through :mod:`ecgbench.data`). They share this one pipeline so a beat means the same thing in each:

1. ``neurokit2.ecg_clean`` (its default "neurokit" method: 0.5 Hz high-pass and 50 Hz powerline
   filter) [code];
2. ``neurokit2.ecg_peaks`` on the cleaned lead, NeuroKit's own R-peak detector [code];
3. ``neurokit2.ecg_delineate(method="prominence")`` on the cleaned lead and those peaks, the
   peak-prominence delineator (Emrich et al. 2024, EUSIPCO 1402) [choice: against LUDB's expert
   annotations it was off by a median 8 ms (PR), 17 ms (QRS) and 14 ms (QT) on 40 sinus records
   at 500 Hz, where the "dwt" method was off by 69, 90 and 50 ms; ``benchmark/data/ecg_stats.py``].
   Its search limits (PR, QRS, R base point) default to NeuroKit's own and can be widened per
   caller (``ecg_features`` widens them for long PR and wide QRS).

A step that fails on a flat, noisy or too short lead (NeuroKit raises assorted errors there)
leaves no peaks or no waves instead of raising; NeuroKit's per-beat warnings are silenced.
``neurokit2`` is imported on the first call (about 1 s), so importing this module is cheap.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from types import ModuleType

import numpy as np

#: the fiducial points the prominence delineator reports, one value per R peak (NaN where not found)
WAVES: tuple[str, ...] = (
    "P_Onsets",
    "P_Peaks",
    "P_Offsets",
    "Q_Peaks",
    "R_Onsets",
    "R_Offsets",
    "S_Peaks",
    "T_Onsets",
    "T_Peaks",
    "T_Offsets",
)


@dataclass(frozen=True)
class Beats:
    """The beats of one lead: ``peaks`` (B,) R-peak samples; ``waves`` each of :data:`WAVES` as a
    (B,) float array of samples (NaN where the delineator found no such point), or None where the
    lead was not delineated (too few peaks, delineation not asked for, or the delineator failed)."""

    peaks: np.ndarray
    waves: dict[str, np.ndarray] | None

    def heart_rate_bpm(self, fs: float) -> float:
        """60 / the median RR interval; NaN with fewer than two peaks."""
        if len(self.peaks) < 2:
            return float("nan")
        return 60.0 * fs / float(np.median(np.diff(self.peaks)))


def neurokit() -> ModuleType:
    """The ``neurokit2`` module, or an ImportError saying how to install it."""
    try:
        import neurokit2
    except ImportError:
        raise ImportError("ECG delineation needs neurokit2: pip install neurokit2") from None
    return neurokit2


def delineate(
    lead: np.ndarray,
    fs: int,
    *,
    min_peaks: int | None = 2,
    max_pr_ms: float | None = None,
    max_qrs_ms: float | None = None,
    max_r_basepoint_ms: float | None = None,
) -> Beats:
    """Clean ``lead`` (T,) sampled at ``fs`` Hz, find its R peaks and, with at least ``min_peaks``
    of them, delineate each beat (``min_peaks=None``: R peaks only). The ``max_*_ms`` search limits
    of the prominence delineator default (None) to NeuroKit's own: PR 300 ms, QRS 180 ms."""
    nk = neurokit()
    limits = {
        name: value
        for name, value in (
            ("max_pr_interval", max_pr_ms),
            ("max_qrs_interval", max_qrs_ms),
            ("max_r_basepoint_interval", max_r_basepoint_ms),
        )
        if value is not None
    }
    with warnings.catch_warnings():  # NeuroKit warns about every beat whose wave it cannot find
        warnings.simplefilter("ignore")
        try:
            cleaned = nk.ecg_clean(lead, sampling_rate=fs)
            peaks = np.asarray(nk.ecg_peaks(cleaned, sampling_rate=fs)[1]["ECG_R_Peaks"], dtype=np.int64)
        except Exception:  # no beat in a flat or pathological lead; NeuroKit's error types vary
            return Beats(np.zeros(0, dtype=np.int64), None)
        if min_peaks is None or len(peaks) < min_peaks:
            return Beats(peaks, None)
        try:
            found = nk.ecg_delineate(cleaned, peaks, sampling_rate=fs, method="prominence", **limits)[1]
        except Exception:
            return Beats(peaks, None)
    waves = {}
    for name in WAVES:  # one value per R peak; a list of another length cannot be aligned to the beats
        values = np.asarray(found.get(f"ECG_{name}", ()), dtype=float)
        waves[name] = values if len(values) == len(peaks) else np.full(len(peaks), np.nan)
    return Beats(peaks, waves)
