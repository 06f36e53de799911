"""Content-level duplicate guard: the same recording under another name, in another dataset.

Public ECG collections re-distribute each other (the PhysioNet/CinC Challenge's ``HR*`` records
are PTB-XL records, its ``S*`` records are PTB records), so patient ids cannot tell that a
pretraining or training record *is* a validation or test record of the evaluated dataset. Every
prepared record therefore gets a **fingerprint** of its signal content, and
:func:`find_duplicates` compares fingerprints across datasets.

Why this fingerprint is robust (and not a hash):

- **rate**: the kept span is resampled to :data:`FINGERPRINT_FS` (25 Hz, ``resample_poly`` with
  its anti-aliasing filter), far below every source rate, so a copy stored at 100 Hz and one at
  500 Hz give the same coarse waveform (what remains differs only in the source's own
  decimation filter, well below the match threshold);
- **gain and offset**: each lead is high-passed at 0.5 Hz and scaled to unit energy, so a copy
  with another ADC gain, a header gain wrong by a factor, another baseline or another unit
  (uV vs mV) gives the same vector;
- **format**: the fingerprint sees only the conditioned mV signal, never the file (WFDB
  ``.dat`` vs Challenge ``.mat``, integer rounding at 1 uV);
- **lead order and names**: leads are in :data:`~benchmark.data.contract.LEADS` order after
  name matching; a masked lead contributes zeros;
- **edges**: the first and last :data:`FINGERPRINT_EDGE_S` are left out (PTB-XL record 242's
  500 Hz file ends in a 1.4 mV step that its 100 Hz file lacks; with it the two scored 0.63).

The per-lead vectors (12 x 25 Hz x duration) are concatenated, projected to
:data:`FINGERPRINT_DIM` dimensions with a fixed Gaussian random matrix (Johnson-Lindenstrauss:
inner products of unit vectors are kept to about ``1/sqrt(dim)``, and near-identical vectors stay
near-identical) and L2-normalised. Two records match when the cosine of their fingerprints is
at least :data:`MATCH_COSINE`. An exact hash of a quantised signal would not do: with hundreds of
quantised values, one of them sits near a bin edge in almost every record, and the 100 Hz and
500 Hz copies would then hash differently.

Measured on the 500 real PTB-XL records (tests/test_duplicates.py): the same record from
records100 and records500 has cosine >= 0.994, and two different recordings at most 0.66 (records
of the same patient included) -- except five pairs with cosine 1.0 that hold identical 500 Hz
signals under two ``ecg_id`` s (137/138, 143/144, 145/463 of two patient ids, 456/457, 459/460; all
in training folds). Not caught: copies cut at another start or time-stretched; a copy with
fewer usable leads matches only while most leads are shared (11 of 12 leads: cosine about
sqrt(11/12) = 0.96).
"""

from __future__ import annotations

import dataclasses
import logging
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.signal import butter, resample_poly, sosfiltfilt

from benchmark.data.contract import DataError, ECGArrays, LeakageError
from benchmark.storage import atomic_write

log = logging.getLogger("benchmark")


FINGERPRINT_FS = 25  # Hz: coarse enough for every source rate, fine enough to keep each beat's shape
FINGERPRINT_DIM = 128  # projected dimensions (float16 in the cache: 256 bytes per record)
FINGERPRINT_HIGHPASS_HZ = 0.5  # removes baseline and offset before the per-lead scaling
FINGERPRINT_EDGE_S = 0.5  # left out at each end: devices and a source's own resampling disturb the edges
FINGERPRINT_SEED = 20_240_615  # the projection matrix; changing it changes every fingerprint
MATCH_COSINE = 0.95  # fingerprints at least this similar are the same recording


@lru_cache(maxsize=8)
def _projection(n_inputs: int) -> np.ndarray:
    rng = np.random.default_rng([FINGERPRINT_SEED, n_inputs])
    return (rng.standard_normal((n_inputs, FINGERPRINT_DIM)) / np.sqrt(FINGERPRINT_DIM)).astype(np.float32)


@lru_cache(maxsize=1)
def _highpass() -> np.ndarray:
    return butter(2, FINGERPRINT_HIGHPASS_HZ, btype="highpass", fs=FINGERPRINT_FS, output="sos")


def fingerprint(x: np.ndarray, mask: np.ndarray, fs: float) -> np.ndarray:
    """(FINGERPRINT_DIM,) float32 unit vector of a (12, T) mV signal at ``fs`` Hz; zeros when no
    lead carries signal (such a record matches nothing)."""
    edge = int(round(FINGERPRINT_EDGE_S * fs))
    if x.shape[1] > 4 * edge:
        x = x[:, edge:-edge]
    ratio = Fraction(FINGERPRINT_FS / fs).limit_denominator(10_000)
    # offsets removed and the edges padded by a line: zero padding would put a ramp at each end
    centred = np.where(mask[:, None], x - np.median(x, axis=1, keepdims=True), 0.0)
    coarse = resample_poly(centred, ratio.numerator, ratio.denominator, axis=1, padtype="line")
    coarse = sosfiltfilt(_highpass(), coarse, axis=1) if coarse.shape[1] > 15 else coarse - coarse.mean(axis=1)[:, None]
    energy = np.linalg.norm(coarse, axis=1, keepdims=True)
    coarse = np.where(mask[:, None] & (energy > 0), coarse / np.maximum(energy, 1e-12), 0.0)
    projected = coarse.reshape(-1).astype(np.float32) @ _projection(coarse.size)
    norm = float(np.linalg.norm(projected))
    return projected / norm if norm > 0 else projected


def find_duplicates(
    queries: np.ndarray, references: np.ndarray, threshold: float = MATCH_COSINE, chunk: int = 4096
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs (query row, reference row, cosine) whose fingerprints match.

    Exact (every pair is compared, no approximate index): a chunked matrix product of
    ``len(queries) x len(references) x 128`` multiply-adds, linear in both counts. Measured: 4,400
    queries (PTB-XL's validation and test records) against 100,000 references took 43 s on the
    2-core AMD EPYC while other jobs held its load average at 20 (an 800k-record pool: ~6 min).
    """
    q = np.asarray(queries, dtype=np.float32)
    r = np.asarray(references, dtype=np.float32)
    rows, cols, sims = [], [], []
    for start in range(0, len(r), chunk):
        similarity = q @ r[start : start + chunk].T
        i, j = np.nonzero(similarity >= threshold)
        rows.append(i)
        cols.append(j + start)
        sims.append(similarity[i, j])
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(sims)


DUPLICATE_POLICIES = ("refuse", "drop")
HELD_OUT, GUARDED = ("val", "test"), ("pretrain", "train")
REPORT_COLUMNS = ("split", "record_id", "same_as", "same_as_split", "cosine")


def guard_duplicates(
    arrays: ECGArrays, pretrain_arrays: ECGArrays, policy: str, report_path: Path
) -> tuple[ECGArrays, ECGArrays, list[str]]:
    """Refuse, or drop and report, every pretraining or training record that is the same
    recording as a validation or test record of ``arrays`` (the evaluated dataset).

    ``pretrain_arrays`` is ``arrays`` itself or a pretraining pool (benchmark/data/pool.py); its
    ``pretrain`` split is checked, and ``arrays``' ``train`` split. Matches go to
    ``report_path`` (CSV); ``refuse`` raises :class:`LeakageError` naming it, ``drop`` removes
    the records from those splits. Returns the arrays to use and the dropped record ids.
    Datasets without record fingerprints (generated data) are not checked.
    """
    if policy not in DUPLICATE_POLICIES:
        raise DataError(f"duplicates policy {policy!r} is not one of {', '.join(DUPLICATE_POLICIES)}")
    if arrays.record_fingerprints is None:
        return arrays, pretrain_arrays, []
    held = np.concatenate([arrays.splits[s] for s in HELD_OUT])
    held_split = np.repeat(HELD_OUT, [len(arrays.splits[s]) for s in HELD_OUT])
    checks = [("train", arrays)]
    if pretrain_arrays.record_fingerprints is not None:
        checks.append(("pretrain", pretrain_arrays))
    rows, drop = [], {}
    for split, source in checks:
        candidates = source.splits[split]
        q, r, cosine = find_duplicates(
            np.asarray(arrays.record_fingerprints)[held], np.asarray(source.record_fingerprints)[candidates]
        )
        record_ids = np.asarray(source.record_ids).astype(str)
        rows += [
            (
                split,
                record_ids[candidates[j]],
                str(np.asarray(arrays.record_ids)[held[i]]),
                held_split[i],
                round(float(c), 4),
            )
            for i, j, c in zip(q, r, cosine)
        ]
        drop[split] = np.unique(candidates[r])
    if not rows:
        return arrays, pretrain_arrays, []
    report = pd.DataFrame(rows, columns=list(REPORT_COLUMNS)).sort_values(["split", "record_id"])
    atomic_write(report_path, lambda f: report.to_csv(f, index=False))
    dropped = sorted(set(report.record_id))
    summary = ", ".join(f"{len(drop[s])} {s}" for s in GUARDED if len(drop.get(s, [])))
    example = report.iloc[0]
    if policy == "refuse":
        raise LeakageError(
            f"{summary} record(s) are the same recording as a validation/test record of {arrays.name} (e.g. "
            f"{example.record_id} = {example.same_as}, fingerprint cosine {example.cosine:g}); every match is in "
            f"{report_path}. Remove them from the source, or run with --duplicates drop to leave them out"
        )
    log.warning(
        "left out %s record(s) that duplicate validation/test records of %s; see %s", summary, arrays.name, report_path
    )

    def without(source: ECGArrays, split: str) -> ECGArrays:
        keep = np.setdiff1d(source.splits[split], drop.get(split, []))
        return dataclasses.replace(source, splits={**source.splits, split: keep})

    guarded = without(arrays, "train")
    if pretrain_arrays is arrays:
        guarded = without(guarded, "pretrain")
        return guarded, guarded, dropped
    return guarded, without(pretrain_arrays, "pretrain"), dropped
