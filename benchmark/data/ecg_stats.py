"""Per-record ECG statistics that compare datasets: measured the same way on any (12, T) record.

They exist to check the synthetic generator against real ECGs (``tests/test_synthetic_calibration.py``,
``docs/synthetic_calibration.py``), so each is defined once, here, and applied unchanged to real
and synthetic records. Signals are the records as a dataset delivers them (mV, mean removed where
said, no filtering), because that is what a method sees under the default preprocessing.

- **Inter-lead correlation** (12, 12): Pearson correlation of the leads over the whole record.
  Datasets are compared by the Frobenius norm of the difference of their mean matrices (all 144
  entries, so each lead pair counts twice): :func:`correlation_distance`.
- **Low-frequency fraction** (12,): share of a lead's variance (mean removed) in DFT bins below
  :data:`LOW_FREQUENCY_HZ` = 0.67 Hz, the AHA's lowest high-pass corner for diagnostic ECGs
  (40 bpm; Kligfield et al. 2007, Circulation 115:1306). By Parseval the periodogram's power
  sums to the variance, so this is exact, with no window or averaging choice.
- **Noise share** (12,): share of a lead's variance that beat-averaging does not explain. Beats
  are cut at the R peaks of lead II from 0.35 to 0.65 median RR around each peak (so windows tile
  the record), the lead's template is the sample-wise median beat, and the noise share is
  sum((beat - template)^2) / sum((beat - mean)^2) over all complete beats. It counts baseline
  wander, muscle noise, mains and beat-to-beat variation alike, in real and synthetic records.
- **Amplitude** (12,): peak-to-peak of that median beat (mV).
- **Heart rate, PR, QRS, QT** (scalars, bpm and s): R peaks and waves of lead II from the
  suite's one delineation (:mod:`benchmark.data.delineation`: ``neurokit2``'s ``ecg_clean``,
  ``ecg_peaks`` and ``ecg_delineate(method="prominence")``, Emrich et al. 2024); per record the median over beats of P onset to R onset (PR), R onset to
  R offset (QRS) and R onset to T offset (QT), and 60 / median RR. Against LUDB's expert
  annotations of lead II (40 sinus records) this delineator's per-record medians were off by a
  median absolute 8 ms (PR), 17 ms (QRS, bias -16 ms) and 14 ms (QT); the "dwt" method was off
  by 69, 90 and 50 ms, so it is not used.

``neurokit2`` is a core dependency.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from benchmark.data.contract import LEADS, DataError
from benchmark.data.delineation import delineate
from benchmark.registry import DATASETS

LOW_FREQUENCY_HZ = 0.67
BEAT_BEFORE_RR, BEAT_AFTER_RR = 0.35, 0.65  # beat window around each R peak, in median RRs
MIN_BEATS = 4  # fewer complete beats leave no meaningful template: the record's beat statistics are NaN
RHYTHM_LEAD = LEADS.index("II")
INTERVALS: tuple[str, ...] = ("heart_rate", "pr", "qrs", "qt")


@dataclass
class RecordStats:
    """Statistics of N records (see the module docstring); NaN where a lead is masked or a
    measurement failed."""

    correlation: np.ndarray  # (N, 12, 12)
    low_frequency: np.ndarray  # (N, 12)
    noise_share: np.ndarray  # (N, 12)
    amplitude: np.ndarray  # (N, 12) mV
    heart_rate: np.ndarray  # (N,) bpm
    pr: np.ndarray  # (N,) s
    qrs: np.ndarray  # (N,) s
    qt: np.ndarray  # (N,) s

    @property
    def mean_correlation(self) -> np.ndarray:
        return _mean_correlation(self.correlation)


def correlation_distance(a: RecordStats, b: RecordStats) -> float:
    """Frobenius norm of the difference of the two datasets' mean inter-lead correlation matrices."""
    return float(np.linalg.norm(a.mean_correlation - b.mean_correlation))


def lead_correlation(signal: np.ndarray, lead_mask: np.ndarray) -> np.ndarray:
    """(12, 12) Pearson correlations; rows and columns of masked or constant leads are NaN."""
    x = signal - signal.mean(axis=1, keepdims=True)
    norm = np.sqrt((x**2).sum(axis=1))
    usable = lead_mask & (norm > 0)
    x = x / np.where(usable, norm, 1.0)[:, None]
    out = x @ x.T
    out[~usable] = np.nan
    out[:, ~usable] = np.nan
    return out


def low_frequency_fraction(signal: np.ndarray, fs: float, cutoff_hz: float = LOW_FREQUENCY_HZ) -> np.ndarray:
    """(12,) share of each lead's variance in DFT bins 0 < f < ``cutoff_hz``; NaN for a constant lead."""
    power = np.abs(np.fft.rfft(signal - signal.mean(axis=1, keepdims=True), axis=1)) ** 2
    freqs = np.fft.rfftfreq(signal.shape[1], 1.0 / fs)
    total = power[:, freqs > 0].sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, power[:, (freqs > 0) & (freqs < cutoff_hz)].sum(axis=1) / total, np.nan)


def beat_statistics(signal: np.ndarray, peaks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(noise share, amplitude), each (12,), from the beats around ``peaks`` (samples); NaN with
    fewer than :data:`MIN_BEATS` complete beats."""
    nan = np.full(signal.shape[0], np.nan)
    if len(peaks) < 2:
        return nan, nan
    rr = float(np.median(np.diff(peaks)))
    before, length = int(round(BEAT_BEFORE_RR * rr)), int(round((BEAT_BEFORE_RR + BEAT_AFTER_RR) * rr))
    starts = peaks - before
    starts = starts[(starts >= 0) & (starts + length <= signal.shape[1])]
    if len(starts) < MIN_BEATS:
        return nan, nan
    beats = signal[:, starts[:, None] + np.arange(length)]  # (12, beats, L)
    template = np.median(beats, axis=1)
    residual = ((beats - template[:, None]) ** 2).sum(axis=(1, 2))
    total = ((beats - beats.mean(axis=(1, 2), keepdims=True)) ** 2).sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(total > 0, residual / total, np.nan)
    return share, np.ptp(template, axis=1)


def rhythm_lead_waves(lead: np.ndarray, fs: int) -> tuple[np.ndarray, dict[str, float]]:
    """R peaks (samples) of one lead and its per-record median heart rate, PR, QRS and QT
    (NaN where neurokit2 finds no beat or no wave), delineated by :func:`delineate`."""
    beats = delineate(lead, fs, min_peaks=3)
    if len(beats.peaks) < 3:
        return beats.peaks, dict.fromkeys(INTERVALS, np.nan)
    heart_rate = beats.heart_rate_bpm(fs)
    if beats.waves is None:
        return beats.peaks, {**dict.fromkeys(INTERVALS, np.nan), "heart_rate": heart_rate}
    waves = beats.waves

    def median_s(start: str, end: str) -> float:
        span = waves[end] - waves[start]
        return float(np.nanmedian(span)) / fs if np.isfinite(span).any() else np.nan

    return beats.peaks, {
        "heart_rate": heart_rate,
        "pr": median_s("P_Onsets", "R_Onsets"),
        "qrs": median_s("R_Onsets", "R_Offsets"),
        "qt": median_s("R_Onsets", "T_Offsets"),
    }


#: the synthetic default was fitted to the PTB-XL NORM records with ecg_id up to this (datasets/synthetic.py);
#: records after it were never seen by the fit and are the held-out half
FIT_LAST_ECG_ID = 500


@dataclass
class NormRecords:
    """PTB-XL records whose diagnostic superclasses are NORM alone, as a benchmark run prepares them."""

    signals: np.ndarray  # (N, 12, T) mV
    lead_mask: np.ndarray  # (N, 12)
    ecg_ids: np.ndarray  # (N,) int
    patient_ids: np.ndarray  # (N,) str

    def part(self, rows: np.ndarray) -> NormRecords:
        return NormRecords(self.signals[rows], self.lead_mask[rows], self.ecg_ids[rows], self.patient_ids[rows])

    def halves(self) -> tuple[NormRecords, NormRecords]:
        """The fit half (ecg_id <= :data:`FIT_LAST_ECG_ID`, the records the generator was fitted to)
        and the held-out half (later ecg_ids of patients the fit half does not hold)."""
        fit = self.ecg_ids <= FIT_LAST_ECG_ID
        held = ~fit & ~np.isin(self.patient_ids, self.patient_ids[fit])
        return self.part(np.flatnonzero(fit)), self.part(np.flatnonzero(held))


def ptbxl_norm(root: str | Path, fs: int, cache_root: str | Path, progress: bool = False) -> NormRecords:
    """The PTB-XL records at ``root`` whose diagnostic superclasses are NORM alone (290 of the 500
    records in ``../shared/data/ptbxl``; 517 of the 998 in ``ptbxl1000``), prepared by the ``ptbxl``
    plugin into ``cache_root`` exactly as a benchmark run prepares them."""
    ptbxl = DATASETS.get("ptbxl")
    arrays = ptbxl(ptbxl.Config(root=str(root))).load(fs, "superdiagnostic", Path(cache_root), progress=progress)
    if "NORM" not in arrays.label_names:
        raise DataError(f"{root}: no PTB-XL record is labelled NORM; point it at a PTB-XL v1.0.3 folder")
    norm = (arrays.labels[:, arrays.label_names.index("NORM")] == 1) & (arrays.labels.sum(axis=1) == 1)
    rows = np.flatnonzero(norm)
    return NormRecords(
        np.asarray(arrays.signals[rows]),
        np.asarray(arrays.lead_mask[rows]),
        np.asarray(arrays.record_ids[rows]).astype(int),
        np.asarray(arrays.patient_ids[rows]).astype(str),
    )


# -- how far apart two sets of records are, with its uncertainty ----------------------------------
def _mean_correlation(correlation: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():  # a lead masked in every record leaves NaN, as it should
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(correlation, axis=0)


def _draw_units(units: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rows of one bootstrap resample: units (patients) drawn with replacement, all their records."""
    names, index = np.unique(units, return_inverse=True)
    members = [np.flatnonzero(index == u) for u in range(len(names))]
    return np.concatenate([members[u] for u in rng.integers(0, len(names), len(names))])


@dataclass
class Distance:
    """A Frobenius distance between mean correlation matrices and its percentile bootstrap CI."""

    value: float
    ci: tuple[float, float]

    def __str__(self) -> str:
        return f"{self.value:.2f} [{self.ci[0]:.2f}, {self.ci[1]:.2f}]"


def distance_with_ci(
    a: RecordStats,
    b: RecordStats,
    units_a: np.ndarray,
    units_b: np.ndarray,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> Distance:
    """:func:`correlation_distance` of ``a`` and ``b`` with a percentile bootstrap CI: each side's
    patients (``units_*``, one per record) resampled independently. Sampling noise makes the
    distance of two finite samples positive even from one population, so read it beside
    :func:`split_half_distances` of real records."""
    rng = np.random.default_rng(seed)
    draws = [
        np.linalg.norm(
            _mean_correlation(a.correlation[_draw_units(units_a, rng)])
            - _mean_correlation(b.correlation[_draw_units(units_b, rng)])
        )
        for _ in range(n_resamples)
    ]
    lo, hi = np.quantile(draws, [0.5 - level / 2, 0.5 + level / 2])
    return Distance(correlation_distance(a, b), (float(lo), float(hi)))


def split_half_distances(stats: RecordStats, units: np.ndarray, n_splits: int = 300, seed: int = 0) -> np.ndarray:
    """(n_splits,) distances between two random halves (by patient) of one set of records: the
    distance that sampling alone puts between two real samples of half its size (the floor no
    generator can go below at that size)."""
    rng = np.random.default_rng(seed)
    names, index = np.unique(units, return_inverse=True)
    out = np.empty(n_splits)
    for k in range(n_splits):
        first = np.isin(index, rng.permutation(len(names))[: len(names) // 2])
        out[k] = np.linalg.norm(
            _mean_correlation(stats.correlation[first]) - _mean_correlation(stats.correlation[~first])
        )
    return out


def record_stats(
    signals: np.ndarray, lead_mask: np.ndarray, fs: int, progress: bool = False, desc: str = "ECG statistics"
) -> RecordStats:
    """Every statistic of every record of ``signals`` (N, 12, T) in mV with ``lead_mask`` (N, 12)."""
    n = len(signals)
    out = RecordStats(
        correlation=np.full((n, len(LEADS), len(LEADS)), np.nan),
        low_frequency=np.full((n, len(LEADS)), np.nan),
        noise_share=np.full((n, len(LEADS)), np.nan),
        amplitude=np.full((n, len(LEADS)), np.nan),
        **{name: np.full(n, np.nan) for name in INTERVALS},
    )
    for r in tqdm(range(n), desc=desc, unit="rec", disable=not progress):
        signal, mask = np.asarray(signals[r], dtype=np.float64), np.asarray(lead_mask[r], dtype=bool)
        out.correlation[r] = lead_correlation(signal, mask)
        out.low_frequency[r] = np.where(mask, low_frequency_fraction(signal, fs), np.nan)
        if not mask[RHYTHM_LEAD]:
            continue
        peaks, intervals = rhythm_lead_waves(signal[RHYTHM_LEAD], fs)
        for name, value in intervals.items():
            getattr(out, name)[r] = value
        share, amplitude = beat_statistics(signal, peaks)
        out.noise_share[r], out.amplitude[r] = np.where(mask, share, np.nan), np.where(mask, amplitude, np.nan)
    return out
