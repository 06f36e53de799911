"""Preprocessing: read every record once, check it, and write a float16 memory-mapped cache.

One pipeline for every dataset read from files (PTB-XL, MIMIC-IV-ECG, WFDB folders, NumPy
arrays). A :class:`SignalSource` lists the records and carries a picklable reader that returns
one record in mV with its channel names and sampling rate (:class:`WfdbReader` reads WFDB
``.hea`` + ``.dat``/``.mat`` with ``wfdb``; :class:`NumpyReader` rows of a ``.npy``).
:func:`prepare_signals` turns record ``i`` into row ``i`` of ``signals.npy`` (N, 12, T):

1. channels are matched to :data:`~benchmark.data.LEADS` **by name** (case and spaces ignored:
   ``AVR`` = ``aVR``), never by position; an unknown name is ignored, a lead named twice or not
   at all is masked (``lead_mask`` False);
2. the first ``duration_s`` seconds are kept; shorter records are excluded;
3. NaN samples (WFDB's invalid-sample value) are **never zeroed**: gaps up to ``max_gap_s`` are
   interpolated linearly, a lead with a longer gap is masked; flat leads (peak-to-peak below
   ``flat_mv``) are masked;
4. resampling to the requested rate with ``scipy.signal.resample_poly`` (polyphase FIR with a
   Kaiser-window anti-aliasing filter);
5. optional zero-phase Butterworth band-pass (``scipy.signal.sosfiltfilt``), e.g. (0.67, 40) Hz
   as LAMAE and ST-MEM use;
6. standardisation policy, default ``none``: signals stay in mV. Amplitude is diagnostic (LVH
   voltage criteria, low QRS voltage, ST deviation in mV) and amplitude ratios between leads are
   the cross-lead structure that multi-lead methods learn; per-record or per-lead z-scores erase
   both. mV values are already on one physical scale across leads, devices and datasets (the
   synthetic dataset is in mV too), and the MAE losses normalise their target patches
   themselves. ``record`` (one scale per record: lead ratios kept, the LAMAE paper's per-record
   standardisation) and ``lead`` (z-score per lead) are available; the choice is in the manifest.

Every record that cannot be used is excluded and listed with its reason in ``report.csv``
beside the cache; every repair (interpolated gap, masked lead, ignored channel) is listed too.

The cache folder ``<cache root>/<dataset>/fs<fs>-<key>/`` is keyed by the parameters, the
reader's identity (which records, declared rate) and :data:`PREPARE_VERSION`, so changed
parameters make a new cache and unchanged ones reuse it. Records are processed in chunks of
:data:`CHUNK` by a process pool writing straight into the memmap (nothing is held in RAM, so
800k MIMIC-IV-ECG records work); a chunk counts as done only when its result file is written
after its rows were flushed, so a restart after a crash redoes only unfinished chunks, and the
``COMPLETE`` marker is written last: a half-written cache never looks complete.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
import os
import shutil
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from fractions import Fraction
from functools import lru_cache
from importlib.metadata import version
from multiprocessing import get_context
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
import wfdb
from filelock import FileLock
from scipy.signal import butter, resample_poly, sosfiltfilt
from tqdm.auto import tqdm

from .data import LEADS, DataError
from .provenance import git_state
from .results import _atomic_write

log = logging.getLogger("benchmark")

PREPARE_VERSION = 1  # bump whenever a change alters prepared signals (it keys the cache)
CHUNK = 256  # records per unit of work and of resumption
COMPLETE = "COMPLETE"
STANDARDIZE = ("none", "record", "lead")
REPORT_COLUMNS = ("record_id", "stage", "action", "detail", "nan_samples")

# bits per sample of the byte-aligned uncompressed WFDB formats (WFDB signal(5)); files in other
# formats are not size-checked (wfdb itself refuses a file too short for its header)
WFDB_BITS = {"8": 8, "16": 16, "61": 16, "80": 8, "160": 16, "24": 24, "32": 32}


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
            raise ValueError(f"preprocess.bandpass_hz must be empty or (low, high) with 0 < low < high, "
                             f"got {self.bandpass_hz}")
        if not 1 <= self.bandpass_order <= 8:
            raise ValueError(f"preprocess.bandpass_order must be in 1..8, got {self.bandpass_order}")
        if self.standardize not in STANDARDIZE:
            raise ValueError(f"preprocess.standardize must be one of {', '.join(STANDARDIZE)}, got {self.standardize!r}")
        if self.max_gap_s < 0 or self.flat_mv < 0:
            raise ValueError("preprocess.max_gap_s and preprocess.flat_mv must be >= 0")


class RecordError(Exception):
    """This record cannot be used; the message (the reason) goes to the report."""


@dataclass
class RawRecord:
    signal: np.ndarray  # (channels, samples) float64 in mV, NaN where the source marks no sample
    fs: float
    channels: list[str]
    source_bytes: int  # size of the files read, for the manifest


class RecordReader(Protocol):
    def identity(self) -> dict: ...  # what keys the cache: which records, read how

    def read(self, i: int) -> RawRecord: ...


def digest(items: list[str]) -> str:
    return hashlib.sha256("\n".join(items).encode()).hexdigest()


@dataclass
class WfdbReader:
    """WFDB records ``root/paths[i]`` (``.hea`` + ``.dat``, or ``.mat`` as in PhysioNet/CinC).

    ``declared_fs``: the rate this dataset's records have (PTB-XL records100: 100 Hz); a header
    that says otherwise marks a damaged or misplaced record, which is excluded.
    """

    root: str
    paths: list[str]
    declared_fs: float | None = None

    def identity(self) -> dict:
        # relative paths only: moving the data folder keeps the cache
        return {"reader": "wfdb", "declared_fs": self.declared_fs, "records": digest(self.paths)}

    def read(self, i: int) -> RawRecord:
        base = os.path.join(self.root, self.paths[i])
        header_path = base + ".hea"
        if not os.path.isfile(header_path):
            raise RecordError(f"header file {header_path} is missing")
        try:
            record = wfdb.rdrecord(base)  # parses the header once (wfdb's parser is the slow part)
        except Exception as exc:  # any failure on a user's file is this record's problem
            raise RecordError(_diagnose(base, header_path, exc)) from None
        if self.declared_fs is not None and not math.isclose(record.fs, self.declared_fs):
            raise RecordError(f"header {header_path} declares {record.fs:g} Hz but this dataset's records here "
                              f"are {self.declared_fs:g} Hz")
        size = os.path.getsize(header_path) + _check_signal_files(record, header_path, os.path.dirname(base))
        return RawRecord(record.p_signal.T, float(record.fs), list(record.sig_name), size)


def _diagnose(base: str, header_path: str, exc: Exception) -> str:
    """Why wfdb could not read a record, as specifically as the files allow."""
    try:
        header = wfdb.rdheader(base)
    except Exception as header_exc:
        return f"header {header_path} cannot be parsed ({type(header_exc).__name__}: {header_exc})"
    _check_signal_files(header, header_path, os.path.dirname(base))  # raises for missing or short files
    return f"signal of {base} cannot be read ({type(exc).__name__}: {exc})"


def _check_signal_files(header: wfdb.Record, header_path: str, directory: str) -> int:
    """Total size of the signal files; RecordError if one is missing or its size disagrees
    with the header's sample count (wfdb silently ignores surplus bytes)."""
    n = header.n_sig
    groups: dict[str, list[tuple[str, int, int]]] = {}
    for name, fmt, offset, spf in zip(header.file_name, header.fmt, header.byte_offset or [None] * n,
                                      header.samps_per_frame or [1] * n):
        groups.setdefault(name, []).append((fmt, offset or 0, spf or 1))
    total = 0
    for name, signals in groups.items():
        path = os.path.join(directory, name)
        if not os.path.isfile(path):
            raise RecordError(f"signal file {path} is missing")
        size = os.path.getsize(path)
        total += size
        fmt, offset = signals[0][0], signals[0][1]
        if header.sig_len and fmt in WFDB_BITS and all(s[0] == fmt for s in signals):
            expected = offset + header.sig_len * sum(spf for _, _, spf in signals) * WFDB_BITS[fmt] // 8
            if size != expected:
                problem = "truncated" if size < expected else "longer than its header says"
                raise RecordError(f"signal file {path} has {size} bytes but {header_path} declares "
                                  f"{header.sig_len} samples x {len(signals)} signals = {expected} bytes ({problem})")
    return total


@lru_cache(maxsize=4)
def _open_npy(path: str) -> np.ndarray:
    return np.load(path, mmap_mode="r")


@dataclass
class NumpyReader:
    """Rows of a (N, channels, T) ``.npy`` (memory-mapped, read one row at a time)."""

    path: str
    channels: tuple[str, ...]
    fs: float
    scale_to_mv: float = 1.0

    def identity(self) -> dict:
        stat = os.stat(self.path)
        array = _open_npy(self.path)
        return {"reader": "numpy", "file_bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                "shape": list(array.shape), "dtype": str(array.dtype), "channels": list(self.channels),
                "fs": self.fs, "scale_to_mv": self.scale_to_mv}

    def read(self, i: int) -> RawRecord:
        row = _open_npy(self.path)[i]
        return RawRecord(np.asarray(row, dtype=np.float64) * self.scale_to_mv, self.fs, list(self.channels), row.nbytes)


@dataclass
class SignalSource:
    """The records of a dataset, in cache row order, and how to read them."""

    dataset: str
    record_ids: np.ndarray  # (N,) str, unique
    reader: RecordReader
    duration_s: float  # the dataset's record length (used when Preprocessing.duration_s is None)


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
            notes.append(("lead masked", f"{lead}: {len(hits)} channels carry this name "
                                         f"({', '.join(repr(channels[c]) for c in hits)}); which one is {lead} "
                                         f"is ambiguous", 0))
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


def condition(raw: RawRecord, fs: int, duration_s: float, prep: Preprocessing) -> tuple[np.ndarray, np.ndarray, list[Note]]:
    """One record as (12, duration_s * fs) float16, its lead mask and what was done to it."""
    source, notes = map_channels(raw.channels)
    n_in, n_out = int(round(duration_s * raw.fs)), int(round(duration_s * fs))
    if raw.signal.shape[1] < n_in:
        raise RecordError(f"record has {raw.signal.shape[1]} samples ({raw.signal.shape[1] / raw.fs:.2f} s at "
                          f"{raw.fs:g} Hz); {duration_s:g} s are needed (lower preprocess.duration_s to keep it)")
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
            notes.append(("lead masked", f"{LEADS[k]}: {n_missing} NaN samples, longest gap "
                                         f"{gaps.max() / raw.fs:.3f} s > max_gap_s {prep.max_gap_s:g} s", n_missing))
        else:
            t = np.arange(n_in)
            x[k, missing] = np.interp(t[missing], t[~missing], x[k, ~missing])
            notes.append(("interpolated", f"{LEADS[k]}: {n_missing} NaN samples in {len(gaps)} gap(s) of at most "
                                          f"{gaps.max() / raw.fs:.3f} s, linearly interpolated", n_missing))
    for k in np.flatnonzero(mask):
        ptp = float(np.ptp(x[k]))
        if ptp < prep.flat_mv:
            mask[k], x[k] = False, 0.0
            notes.append(("lead masked", f"{LEADS[k]}: flat (peak-to-peak {1000 * ptp:.1f} uV < flat_mv "
                                         f"{1000 * prep.flat_mv:g} uV)", 0))
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
        notes.append(("lead masked", f"{LEADS[k]}: amplitude beyond the float16 range "
                                     f"(max |x| {np.abs(x[k]).max():.3g}); check the header's gain", 0))
    if not mask.any():
        raise RecordError("no usable lead: " + "; ".join(detail for _, detail, _ in notes))
    return out, mask, notes


# -- the parallel, resumable cache build --------------------------------------------------------
_worker: dict = {}


def _init_worker(reader: RecordReader, fs: int, duration_s: float, prep: Preprocessing, signals_path: str) -> None:
    _worker.update(reader=reader, fs=fs, duration_s=duration_s, prep=prep,
                   signals=np.load(signals_path, mmap_mode="r+"))


def _prepare_chunk(start: int, stop: int) -> dict:
    """Rows ``start:stop`` into the memmap (flushed before returning) and what happened to them."""
    w = _worker
    lead_mask = np.zeros((stop - start, len(LEADS)), dtype=bool)
    source_bytes = np.zeros(stop - start, dtype=np.int64)
    notes: list[tuple[int, str, str, int]] = []
    for i in range(start, stop):
        try:
            raw = w["reader"].read(i)
            signal, lead_mask[i - start], record_notes = condition(raw, w["fs"], w["duration_s"], w["prep"])
            source_bytes[i - start] = raw.source_bytes
        except RecordError as exc:
            w["signals"][i] = 0.0
            lead_mask[i - start] = False
            notes.append((i, "excluded", str(exc), 0))
            continue
        w["signals"][i] = signal
        notes.extend((i, *note) for note in record_notes)
    w["signals"].flush()
    return {"start": start, "lead_mask": lead_mask, "source_bytes": source_bytes, "notes": notes}


def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _save_chunk(progress_dir: Path, result: dict) -> None:
    def write(f):
        np.savez(f, lead_mask=result["lead_mask"], source_bytes=result["source_bytes"],
                 notes=np.array(json.dumps(result["notes"])))
    _atomic_write(progress_dir / f"chunk-{result['start']:010d}.npz", write)


def cache_params(source: SignalSource, fs: int, prep: Preprocessing) -> dict:
    return {"prepare_version": PREPARE_VERSION, "dataset": source.dataset, "fs": fs,
            "duration_s": prep.duration_s or source.duration_s, "preprocessing": asdict(prep),
            "source": source.reader.identity(), "n_records": len(source.record_ids)}


def prepare_signals(source: SignalSource, fs: int, prep: Preprocessing, cache_root: Path,
                    workers: int | None = None, progress: bool = True) -> Path:
    """The folder of the prepared signals at ``fs`` Hz, built (or finished) if needed."""
    if prep.bandpass_hz and prep.bandpass_hz[1] >= fs / 2:
        raise DataError(f"{source.dataset}: preprocess.bandpass_hz high edge {prep.bandpass_hz[1]:g} Hz must be below "
                        f"the Nyquist frequency {fs / 2:g} Hz of the prepared rate; lower it or raise the rate")
    ids = pd.Index(source.record_ids)
    if ids.has_duplicates:
        raise DataError(f"{source.dataset}: record ids must be unique; duplicated: "
                        f"{', '.join(map(str, ids[ids.duplicated()].unique()[:5]))}")
    params = cache_params(source, fs, prep)
    key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
    directory = Path(cache_root) / source.dataset / f"fs{fs}-{key}"
    if (directory / COMPLETE).is_file():
        return directory
    directory.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{directory}.lock"):  # concurrent runs (e.g. one per GPU) build it once
        if not (directory / COMPLETE).is_file():
            _build(directory, source, params, prep, workers or default_workers(), progress)
    return directory


def _build(directory: Path, source: SignalSource, params: dict, prep: Preprocessing, workers: int,
           progress: bool) -> None:
    n, fs, duration_s = len(source.record_ids), params["fs"], params["duration_s"]
    shape = (n, len(LEADS), int(round(duration_s * fs)))
    progress_dir = directory / "progress"
    directory.mkdir(exist_ok=True)
    signals_path = directory / "signals.npy"
    try:
        resumable = np.load(signals_path, mmap_mode="r").shape == shape and progress_dir.is_dir()
    except (OSError, ValueError):
        resumable = False
    if not resumable:
        shutil.rmtree(progress_dir, ignore_errors=True)
        np.lib.format.open_memmap(signals_path, mode="w+", dtype=np.float16, shape=shape).flush()
        progress_dir.mkdir()
        _atomic_write(directory / "params.json", lambda f: f.write(json.dumps(params, indent=1).encode()))
    done = {int(p.stem.split("-")[1]) for p in progress_dir.glob("chunk-*.npz")}
    todo = [(s, min(s + CHUNK, n)) for s in range(0, n, CHUNK) if s not in done]
    if done:
        log.info("%s: resuming preparation, %d of %d chunks already done", source.dataset, len(done), len(done) + len(todo))

    started = time.perf_counter()
    initargs = (source.reader, fs, duration_s, prep, str(signals_path))
    bar = tqdm(total=n, initial=n - sum(stop - start for start, stop in todo), unit="rec", dynamic_ncols=True,
               desc=f"prepare {source.dataset} {fs} Hz", disable=not progress)
    workers = min(workers, len(todo))
    try:
        if workers <= 1:
            _init_worker(*initargs)
            for start, stop in todo:
                _save_chunk(progress_dir, _prepare_chunk(start, stop))
                bar.update(stop - start)
        else:
            # spawn: a clean interpreter per worker (fork is unsafe after torch has started threads)
            with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_init_worker,
                                     initargs=initargs) as pool:
                futures = {pool.submit(_prepare_chunk, start, stop): stop - start for start, stop in todo}
                try:
                    for future in as_completed(futures):
                        _save_chunk(progress_dir, future.result())
                        bar.update(futures[future])
                except BaseException:
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
    finally:
        _worker.clear()
        bar.close()
    _finalize(directory, source, params, time.perf_counter() - started, sum(stop - start for start, stop in todo), workers)


def _finalize(directory: Path, source: SignalSource, params: dict, wall_s: float, processed: int, workers: int) -> None:
    """Assemble the per-chunk results; the COMPLETE marker is written last."""
    n = len(source.record_ids)
    lead_mask = np.zeros((n, len(LEADS)), dtype=bool)
    source_bytes = np.zeros(n, dtype=np.int64)
    rows = []
    for path in sorted((directory / "progress").glob("chunk-*.npz")):
        with np.load(path, allow_pickle=False) as chunk:
            start = int(path.stem.split("-")[1])
            stop = start + len(chunk["lead_mask"])
            lead_mask[start:stop], source_bytes[start:stop] = chunk["lead_mask"], chunk["source_bytes"]
            rows.extend((source.record_ids[i], "signal", action, detail, nan) for i, action, detail, nan
                        in json.loads(str(chunk["notes"])))
    report = pd.DataFrame(rows, columns=list(REPORT_COLUMNS))
    for name, array in (("lead_mask", lead_mask), ("record_ids", np.asarray(source.record_ids, dtype=str)),
                        ("source_bytes", source_bytes)):
        _atomic_write(directory / f"{name}.npy", lambda f, a=array: np.save(f, a))
    _atomic_write(directory / "report.csv", lambda f: report.to_csv(f, index=False))
    excluded = int((~lead_mask.any(axis=1)).sum())
    manifest = {
        **params,
        "usable": n - excluded, "excluded": excluded,
        "actions": dict(Counter(report["action"])),
        "nan_samples_interpolated": int(report.loc[report.action == "interpolated", "nan_samples"].sum()),
        "source_bytes_total": int(source_bytes.sum()),
        "signals": {"file": "signals.npy", "dtype": "float16", "shape": [n, len(LEADS), int(round(params["duration_s"] * params["fs"]))],
                    "leads": list(LEADS), "unit": "mV" if params["preprocessing"]["standardize"] == "none" else "standardised"},
        "code": {"ecgbench": version("ecgbench"), "git": git_state(),
                 "packages": {p: version(p) for p in ("wfdb", "scipy", "numpy")}},
        "prepared_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "last_session": {"records_processed": processed, "wall_s": round(wall_s, 3), "workers": workers,
                         "records_per_s": round(processed / wall_s, 1) if wall_s > 0 and processed else None},
    }
    _atomic_write(directory / "manifest.json", lambda f: f.write(json.dumps(manifest, indent=1).encode()))
    _atomic_write(directory / COMPLETE, lambda f: f.write(b"ok\n"))
    shutil.rmtree(directory / "progress", ignore_errors=True)
    log.info("%s at %d Hz: %d records prepared, %d excluded, %s; report: %s", source.dataset, params["fs"], n, excluded,
             ", ".join(f"{v} {k}" for k, v in manifest["actions"].items() if k != "excluded") or "no repairs",
             directory / "report.csv")
