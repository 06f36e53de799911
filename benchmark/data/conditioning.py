"""Signal conditioning: one raw record -> the 12 leads at the prepared rate, checked and repaired.

:func:`condition` turns a :class:`~benchmark.data.readers.RawRecord` into a (12, T) float16 row:

1. channels are matched to :data:`~benchmark.data.contract.LEADS` **by name** (case and spaces
   ignored: ``AVR`` = ``aVR``), never by position; an unknown name is ignored, a lead named twice
   or not at all is masked (``lead_mask`` False);
2. the first ``duration_s`` seconds are kept; shorter records are excluded;
3. NaN samples (WFDB's invalid-sample value) are **never zeroed**: gaps up to ``max_gap_s`` are
   interpolated linearly, a lead with a longer gap is masked; flat leads (peak-to-peak below
   ``flat_mv``) are masked;
4. resampling to the requested rate with ``scipy.signal.resample_poly`` (polyphase FIR with a
   Kaiser-window anti-aliasing filter);
5. optional zero-phase Butterworth band-pass (``scipy.signal.sosfiltfilt``), e.g. (0.67, 40) Hz
   as ST-MEM uses;
6. standardisation policy, default ``none``: signals stay in mV. Amplitude is diagnostic (LVH
   voltage criteria, low QRS voltage, ST deviation in mV) and amplitude ratios between leads are
   the cross-lead structure that multi-lead methods learn; per-record or per-lead z-scores erase
   both. mV values are already on one physical scale across leads, devices and datasets (the
   synthetic dataset is in mV too), and the MAE losses normalise their target patches
   themselves. ``record`` (one scale per record: lead ratios kept; ST-MEM's code standardises
   per record) and ``lead`` (z-score per lead) are available; the choice is in the manifest.

Every repair (interpolated gap, masked lead, ignored channel) is returned as a note for the
preparation report.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

import numpy as np
from scipy.signal import butter, resample_poly, sosfiltfilt

from benchmark.data.contract import LEADS
from benchmark.data.readers import RawRecord, RecordError

log = logging.getLogger("benchmark")


STANDARDIZE = ("none", "record", "lead")


@dataclass
class Preprocessing:
    """How records become cached signals (all of it keys the cache)."""

    duration_s: float | None = None  # kept from each record's start; None: the dataset's length
    bandpass_hz: tuple[float, ...] = ()  # (low, high) zero-phase Butterworth; () = off
    bandpass_order: int = 4
    standardize: str = "none"  # none (mV) | record | lead — see the module docstring
    max_gap_s: float = 0.1  # NaN gaps up to this long are interpolated; longer ones mask the lead
    flat_mv: float = 0.01  # a lead whose peak-to-peak is below this (10 uV) is flat: masked

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


Note = tuple[str, str, int]  # (action, detail, NaN samples involved)


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


def _runs(mask: np.ndarray) -> np.ndarray:
    """Lengths of the runs of True in a 1-D bool array."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)


@lru_cache(maxsize=8)
def _bandpass(low: float, high: float, order: int, fs: int) -> np.ndarray:
    return butter(order, (low, high), btype="bandpass", fs=fs, output="sos")


def condition(
    raw: RawRecord, fs: int, duration_s: float, prep: Preprocessing
) -> tuple[np.ndarray, np.ndarray, list[Note]]:
    """One record as (12, duration_s * fs) float16, its lead mask and what was done to it."""
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
    for k in np.flatnonzero(mask):
        ptp = float(np.ptp(x[k]))
        if ptp < prep.flat_mv:
            mask[k], x[k] = False, 0.0
            notes.append(
                (
                    "lead masked",
                    f"{LEADS[k]}: flat (peak-to-peak {1000 * ptp:.1f} uV < flat_mv {1000 * prep.flat_mv:g} uV)",
                    0,
                )
            )
    if not mask.any():
        raise RecordError("no usable lead: " + "; ".join(detail for _, detail, _ in notes))

    if raw.fs != fs:
        ratio = Fraction(fs / raw.fs).limit_denominator(10_000)
        x = resample_poly(x, ratio.numerator, ratio.denominator, axis=1)
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
    return out, mask, notes
