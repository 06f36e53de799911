"""Signal conditioning: one raw record -> the 12 leads at the prepared rate, checked and repaired.

:func:`condition` turns a :class:`~benchmark.data.readers.RawRecord` into a (12, T) float16 row:

1. channels are matched to :data:`~benchmark.data.contract.LEADS` **by name** (case and spaces
   ignored: ``AVR`` = ``aVR``), never by position; an unknown name is ignored, a lead named twice
   or not at all is masked (``lead_mask`` False);
2. the first ``duration_s`` seconds are kept; shorter records are excluded;
3. NaN samples (WFDB's invalid-sample value) are **never zeroed**: gaps up to ``max_gap_s`` are
   interpolated linearly, a lead with a longer gap is masked; flat leads (peak-to-peak below
   ``flat_mv``) are masked;
4. plausibility checks (:class:`Plausibility`, ``preprocess.checks.*``), on the repaired mV
   signal at the source rate, each reported per record:

   - **amplitude**: the record's amplitude (median over its leads of each lead's 99th percentile
     of ``|x - median(x)|``) outside ``amplitude_mv`` -> record **excluded**: a header gain off by
     a factor (uV written as mV, ADC units without a gain) makes every lead implausible alike; a
     single lead above the upper bound in a plausible record -> that lead **masked**;
   - **copies**: two leads that are exact copies or exact negatives of each other (an export or
     wiring fault; which one is genuine is unknown) -> both **masked**;
   - **clipping**: runs of a lead's extreme value lasting ``clip_run_s`` or longer (ADC
     saturation) -> **flagged**; more than ``clip_max_fraction`` of the lead clipped -> **masked**;
   - **heart rate**: R peaks of lead II (else the strongest lead) found with ``neurokit2``
     (``ecg_clean`` + ``ecg_peaks``, Makowski et al. 2021; the suite's one delineation,
     :mod:`benchmark.data.delineation`); a rate outside ``heart_rate_bpm`` or
     fewer than two beats -> **flagged** (kept: asystole or an extreme tachycardia may be real,
     and the labels decide what the record teaches);
5. the record's content fingerprint (:func:`benchmark.data.duplicates.fingerprint`) of the
   checked signal, for the cross-dataset duplicate guard;
6. resampling to the requested rate with ``scipy.signal.resample_poly`` (polyphase FIR) with the
   anti-aliasing filter written out, :func:`resampling_filter` (scipy's default design, built
   once per rate pair instead of once per record, and pinned: a scipy release that changes its
   default cannot change prepared signals);
7. optional zero-phase Butterworth band-pass (``scipy.signal.sosfiltfilt``), e.g. (0.67, 40) Hz
   as ST-MEM uses;
8. standardisation policy, default ``none``: signals stay in mV. Amplitude is diagnostic (LVH
   voltage criteria, low QRS voltage, ST deviation in mV) and amplitude ratios between leads are
   the cross-lead structure that multi-lead methods learn; per-record or per-lead z-scores erase
   both. mV values are already on one physical scale across leads, devices and datasets (the
   synthetic dataset is in mV too), and the MAE losses normalise their target patches
   themselves. ``record`` (one scale per record: lead ratios kept; ST-MEM's code standardises
   per record) and ``lead`` (z-score per lead) are available; the choice is in the manifest.

Every repair and finding (interpolated gap, masked lead, ignored channel, flag) is returned as a
note for the preparation report. A gain off by a smaller factor (5x: a typical record at 2.5 mV)
or on one lead only is found by comparing each record with its whole dataset, after preparation
(:mod:`benchmark.data.gain`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache

import numpy as np
from scipy.signal import butter, firwin, resample_poly, sosfiltfilt

from benchmark.data.contract import LEADS
from benchmark.data.delineation import delineate
from benchmark.data.duplicates import fingerprint
from benchmark.data.readers import Note, RawRecord, RecordError

log = logging.getLogger("benchmark")


STANDARDIZE = ("none", "record", "lead")


@dataclass
class Plausibility:
    """Thresholds of the plausibility checks (``--set DATASET.preprocess.checks.FIELD=...``);
    what each check does is in the module docstring. The defaults leave every record of the
    real PTB-XL, LUDB and CinC samples in ../shared/data unexcluded ([choice]s: ECG amplitudes
    are 0.1-5 mV, so 0.05-20 mV catches a gain off by 20x or more in either direction; 20-300
    bpm spans asystole-free bradycardia to ventricular flutter; an ADC rail held for 50 ms is
    saturation, a wave's peak at 1 uV resolution lasts a few ms)."""

    amplitude_mv: tuple[float, ...] = (0.05, 20.0)  # (low, high) plausible record amplitude
    heart_rate_bpm: tuple[float, ...] = (20.0, 300.0)  # (low, high); () = no heart-rate check
    duplicate_tol_mv: float = 1e-6  # leads this close to a copy or negative of another are duplicates
    clip_run_s: float = 0.05  # a lead at its extreme value this long is clipped
    clip_max_fraction: float = 0.05  # more of a lead clipped than this masks it

    def __post_init__(self):
        if len(self.amplitude_mv) != 2 or not 0 <= self.amplitude_mv[0] < self.amplitude_mv[1]:
            raise ValueError(f"checks.amplitude_mv must be (low, high) with 0 <= low < high, got {self.amplitude_mv}")
        if self.heart_rate_bpm and (
            len(self.heart_rate_bpm) != 2 or not 0 <= self.heart_rate_bpm[0] < self.heart_rate_bpm[1]
        ):
            raise ValueError(
                f"checks.heart_rate_bpm must be empty or (low, high) with 0 <= low < high, got {self.heart_rate_bpm}"
            )
        if self.duplicate_tol_mv < 0 or self.clip_run_s <= 0 or not 0 < self.clip_max_fraction <= 1:
            raise ValueError(
                "checks: duplicate_tol_mv >= 0, clip_run_s > 0 and 0 < clip_max_fraction <= 1 are required"
            )


@dataclass
class Preprocessing:
    """How records become cached signals (all of it keys the cache)."""

    duration_s: float | None = None  # kept from each record's start; None: the dataset's length
    bandpass_hz: tuple[float, ...] = ()  # (low, high) zero-phase Butterworth; () = off
    bandpass_order: int = 4
    standardize: str = "none"  # none (mV) | record | lead — see the module docstring
    max_gap_s: float = 0.1  # NaN gaps up to this long are interpolated; longer ones mask the lead
    flat_mv: float = 0.01  # a lead whose peak-to-peak is below this (10 uV) is flat: masked
    checks: Plausibility = field(default_factory=Plausibility)

    def __post_init__(self):
        if self.duration_s is not None and self.duration_s <= 0:
            raise ValueError(f"preprocess.duration_s must be > 0 (or none), got {self.duration_s}")
        if self.bandpass_hz and (len(self.bandpass_hz) != 2 or not 0 < self.bandpass_hz[0] < self.bandpass_hz[1]):
            raise ValueError(
                f"preprocess.bandpass_hz must be empty or (low, high) with 0 < low < high, got {self.bandpass_hz}"
            )
        if not 1 <= self.bandpass_order <= 8:
            raise ValueError(f"preprocess.bandpass_order must be in 1..8, got {self.bandpass_order}")
        if self.standardize not in STANDARDIZE:
            raise ValueError(
                f"preprocess.standardize must be one of {', '.join(STANDARDIZE)}, got {self.standardize!r}"
            )
        if self.max_gap_s < 0 or self.flat_mv < 0:
            raise ValueError("preprocess.max_gap_s and preprocess.flat_mv must be >= 0")


# -- one record -------------------------------------------------------------------------------
_LEAD_INDEX = {name.lower(): k for k, name in enumerate(LEADS)}


def map_channels(channels: list[str]) -> tuple[np.ndarray, list[Note]]:
    """Channel index of each of :data:`LEADS` (-1: absent or ambiguous), matched by name."""
    found: dict[int, list[int]] = {}
    notes: list[Note] = []
    for c, name in enumerate(channels):
        k = _LEAD_INDEX.get(str(name).strip().lower())
        if k is None:
            notes.append(("channel ignored", f"unknown lead name {name!r} (channel {c})", 0))
        else:
            found.setdefault(k, []).append(c)
    source = np.full(len(LEADS), -1)
    for k, lead in enumerate(LEADS):
        hits = found.get(k, [])
        if len(hits) == 1:
            source[k] = hits[0]
        elif hits:
            notes.append(
                (
                    "lead masked",
                    f"{lead}: {len(hits)} channels carry this name "
                    f"({', '.join(repr(channels[c]) for c in hits)}); which one is {lead} "
                    f"is ambiguous",
                    0,
                )
            )
        else:
            notes.append(("lead masked", f"{lead}: no channel has this name", 0))
    return source, notes


def _run_bounds(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Starts and lengths of the runs of True in a 1-D bool array."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    starts = np.flatnonzero(edges == 1)
    return starts, np.flatnonzero(edges == -1) - starts


def _runs(mask: np.ndarray) -> np.ndarray:
    """Lengths of the runs of True in a 1-D bool array."""
    return _run_bounds(mask)[1]


@lru_cache(maxsize=8)
def resampling_filter(up: int, down: int) -> np.ndarray:
    """Low-pass FIR for resampling by ``up/down``: 20 * max(up, down) + 1 taps, cutoff at the
    lower Nyquist frequency, Kaiser window with beta 5 (``resample_poly``'s default design)."""
    rate = max(up, down)
    taps = firwin(2 * 10 * rate + 1, 1.0 / rate, window=("kaiser", 5.0))
    taps.flags.writeable = False  # shared by every record; resample_poly copies it
    return taps


@lru_cache(maxsize=8)
def _bandpass(low: float, high: float, order: int, fs: int) -> np.ndarray:
    return butter(order, (low, high), btype="bandpass", fs=fs, output="sos")


def lead_amplitude(x: np.ndarray) -> np.ndarray:
    """Each lead's 99th percentile of ``|x - median(x)|`` (over the last axis): its wave
    amplitude, not one spike's."""
    return np.percentile(np.abs(x - np.median(x, axis=-1, keepdims=True)), 99, axis=-1)


def _heart_rate(lead: np.ndarray, fs: float) -> tuple[float, int]:
    """(beats per minute from the median RR interval, beats found) by the suite's R-peak detector
    (:func:`benchmark.data.delineation.delineate`, R peaks only)."""
    beats = delineate(lead, int(round(fs)), min_peaks=None)
    return beats.heart_rate_bpm(fs), len(beats.peaks)


def check_plausibility(x: np.ndarray, mask: np.ndarray, fs: float, checks: Plausibility) -> list[Note]:
    """The checks of the module docstring on (12, T) mV at ``fs``; masks leads in ``mask`` in place,
    raises RecordError for a record to exclude, returns the notes."""
    notes: list[Note] = []
    amplitude = lead_amplitude(x)
    low, high = checks.amplitude_mv
    record_amplitude = float(np.median(amplitude[mask]))
    if not low <= record_amplitude <= high:
        raise RecordError(
            f"implausible amplitude: median lead amplitude {record_amplitude:.4g} mV is outside "
            f"{low:g}-{high:g} mV (a typical ECG's is about 1 mV); the header's gain or unit is probably "
            f"wrong (uV given as mV, ADC units without a gain): fix the header, or widen "
            f"preprocess.checks.amplitude_mv"
        )
    for k in np.flatnonzero(mask & (amplitude > high)):
        mask[k] = False
        notes.append(("lead masked", f"{LEADS[k]}: implausible amplitude {amplitude[k]:.4g} mV > {high:g} mV", 0))

    present = list(np.flatnonzero(mask))
    while present:  # one note per group of leads that are copies or negatives of one another
        a = present.pop(0)
        twins = [
            (b, "copy" if np.abs(x[a] - x[b]).max() <= checks.duplicate_tol_mv else "negative")
            for b in present
            if min(np.abs(x[a] - x[b]).max(), np.abs(x[a] + x[b]).max()) <= checks.duplicate_tol_mv
        ]
        if twins:
            present = [b for b in present if b not in {b for b, _ in twins}]
            mask[[a, *(b for b, _ in twins)]] = False
            described = ", ".join(f"{LEADS[b]} (exact {relation})" for b, relation in twins)
            notes.append(
                (
                    "lead masked",
                    f"{LEADS[a]}: {described} of it (an export or wiring fault; which lead is genuine is "
                    f"unknown): all {len(twins) + 1} masked",
                    0,
                )
            )

    min_run = max(2, int(round(checks.clip_run_s * fs)))
    for k in np.flatnonzero(mask):
        starts, lengths = [], []
        for extreme in (x[k].max(), x[k].min()):
            run_starts, run_lengths = _run_bounds(x[k] == extreme)
            starts += run_starts[run_lengths >= min_run].tolist()
            lengths += run_lengths[run_lengths >= min_run].tolist()
        if not lengths:
            continue
        fraction = sum(lengths) / x.shape[1]
        detail = (
            f"{LEADS[k]}: held at its extreme value for >= {checks.clip_run_s:g} s in {len(lengths)} run(s) "
            f"(from {min(starts) / fs:.2f} s; {100 * fraction:.1f}% of the lead): ADC saturation or a fill value"
        )
        if fraction > checks.clip_max_fraction:
            mask[k] = False
            notes.append(("lead masked", f"{detail} > clip_max_fraction {checks.clip_max_fraction:g}", 0))
        else:
            notes.append(("flagged", detail, 0))
    if not mask.any():
        raise RecordError("no usable lead: " + "; ".join(detail for _, detail, _ in notes))

    if checks.heart_rate_bpm:
        lead = LEADS.index("II") if mask[LEADS.index("II")] else int(np.argmax(np.where(mask, amplitude, -1.0)))
        rate, beats = _heart_rate(x[lead], fs)
        low_hr, high_hr = checks.heart_rate_bpm
        if beats < 2:
            notes.append(("flagged", f"no heart rate: {beats} beat(s) found in {LEADS[lead]} (neurokit2)", 0))
        elif not low_hr <= rate <= high_hr:
            notes.append(
                (
                    "flagged",
                    f"implausible heart rate {rate:.0f} bpm in {LEADS[lead]} (outside {low_hr:g}-{high_hr:g} bpm; "
                    f"{beats} beats found by neurokit2)",
                    0,
                )
            )
    return notes


def condition(
    raw: RawRecord, fs: int, duration_s: float, prep: Preprocessing
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[Note]]:
    """One record as (12, duration_s * fs) float16, its lead mask, its content fingerprint
    (benchmark/data/duplicates.py) and what was done to it."""
    source, notes = map_channels(raw.channels)
    n_in, n_out = int(round(duration_s * raw.fs)), int(round(duration_s * fs))
    if raw.signal.shape[1] < n_in:
        raise RecordError(
            f"record has {raw.signal.shape[1]} samples ({raw.signal.shape[1] / raw.fs:.2f} s at "
            f"{raw.fs:g} Hz); {duration_s:g} s are needed (lower preprocess.duration_s to keep it)"
        )
    mask = source >= 0
    x = np.zeros((len(LEADS), n_in))
    x[mask] = raw.signal[source[mask], :n_in]
    x[~np.isfinite(x)] = np.nan
    max_gap = int(prep.max_gap_s * raw.fs)
    for k in np.flatnonzero(mask & np.isnan(x).any(axis=1)):
        missing = np.isnan(x[k])
        gaps = _runs(missing)
        n_missing = int(missing.sum())
        if missing.all() or gaps.max() > max_gap:
            mask[k], x[k] = False, 0.0
            notes.append(
                (
                    "lead masked",
                    f"{LEADS[k]}: {n_missing} NaN samples, longest gap "
                    f"{gaps.max() / raw.fs:.3f} s > max_gap_s {prep.max_gap_s:g} s",
                    n_missing,
                )
            )
        else:
            t = np.arange(n_in)
            x[k, missing] = np.interp(t[missing], t[~missing], x[k, ~missing])
            notes.append(
                (
                    "interpolated",
                    f"{LEADS[k]}: {n_missing} NaN samples in {len(gaps)} gap(s) of at most "
                    f"{gaps.max() / raw.fs:.3f} s, linearly interpolated",
                    n_missing,
                )
            )
    flat_but_not_blank = 0
    for k in np.flatnonzero(mask):
        ptp = float(np.ptp(x[k]))
        if ptp < prep.flat_mv:
            flat_but_not_blank += ptp > 0
            mask[k], x[k] = False, 0.0
            notes.append(
                (
                    "lead masked",
                    f"{LEADS[k]}: flat (peak-to-peak {1000 * ptp:.1f} uV < flat_mv {1000 * prep.flat_mv:g} uV)",
                    0,
                )
            )
    if not mask.any() and flat_but_not_blank == len(LEADS):
        raise RecordError(
            f"implausible amplitude: every lead's peak-to-peak is below flat_mv {1000 * prep.flat_mv:g} uV but "
            f"not zero; the header's gain or unit is probably wrong (mV given as V): fix the header"
        )
    if not mask.any():
        raise RecordError("no usable lead: " + "; ".join(detail for _, detail, _ in notes))
    notes += check_plausibility(x, mask, raw.fs, prep.checks)
    x[~mask] = 0.0
    content = fingerprint(x, mask, raw.fs)

    if raw.fs != fs:
        ratio = Fraction(fs / raw.fs).limit_denominator(10_000)
        up, down = ratio.numerator, ratio.denominator
        x = resample_poly(x, up, down, axis=1, window=resampling_filter(up, down))
    x = x[:, :n_out]
    if x.shape[1] < n_out:  # only if the rate ratio is not rational within 1e-4
        raise RecordError(f"resampling {raw.fs:g} -> {fs} Hz gave {x.shape[1]} samples, expected {n_out}")
    if prep.bandpass_hz:
        x = sosfiltfilt(_bandpass(*prep.bandpass_hz, prep.bandpass_order, fs), x, axis=1)
    if prep.standardize == "record":
        present = x[mask] - x[mask].mean(axis=1, keepdims=True)
        x[mask] = present / max(float(present.std()), 1e-8)
    elif prep.standardize == "lead":
        x[mask] = (x[mask] - x[mask].mean(axis=1, keepdims=True)) / np.maximum(x[mask].std(axis=1, keepdims=True), 1e-8)
    x[~mask] = 0.0
    out = x.astype(np.float16)
    for k in np.flatnonzero(mask & ~np.isfinite(out).all(axis=1)):
        mask[k], out[k] = False, 0.0
        notes.append(
            (
                "lead masked",
                f"{LEADS[k]}: amplitude beyond the float16 range "
                f"(max |x| {np.abs(x[k]).max():.3g}); check the header's gain",
                0,
            )
        )
    if not mask.any():
        raise RecordError("no usable lead: " + "; ".join(detail for _, detail, _ in notes))
    return out, mask, content, notes
