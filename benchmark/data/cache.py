"""The prepared-signal cache: every record read and conditioned once into a float16 memory map.

One pipeline for every dataset read from files (PTB-XL, MIMIC-IV-ECG, WFDB folders, NumPy
arrays): :func:`prepare_signals` turns record ``i`` of a :class:`~benchmark.data.readers.SignalSource`
into row ``i`` of ``signals.npy`` (N, 12, T) with :func:`~benchmark.data.conditioning.condition`.
Every record that cannot be used is excluded and listed with its reason in ``report.csv``
beside the cache; every repair is listed too, and so is every flag of the dataset-wide gain check
(:mod:`benchmark.data.gain`, summarised per source in ``gain.json``).

The cache folder ``<cache root>/<dataset>/fs<fs>-<key>/`` is keyed by the parameters, the
reader's identity (which records, declared rate), the **content** of the source files
(:mod:`benchmark.data.content`: their SHA-256, never their location) and :data:`PREPARE_VERSION`,
so changed parameters or changed files make a new cache, unchanged ones reuse it wherever the
data sits, and the key is the prepared data's fingerprint that results are identified by.
Records are processed in chunks of
:data:`CHUNK` by a process pool writing straight into the memmap (nothing is held in RAM, so
800k MIMIC-IV-ECG records work); a chunk counts as done only when its result file is written
after its rows were flushed, so a restart after a crash redoes only unfinished chunks, and the
``COMPLETE`` marker is written last: a half-written cache never looks complete.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from functools import partial
from importlib.metadata import version
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd
from filelock import FileLock
from tqdm.auto import tqdm

from benchmark.config import signature
from benchmark.data.conditioning import Preprocessing, condition
from benchmark.data.content import Hasher
from benchmark.data.contract import LEADS, DataError
from benchmark.data.duplicates import FINGERPRINT_DIM
from benchmark.data.gain import check_prepared
from benchmark.data.readers import RecordError, RecordReader, SignalSource, digest
from benchmark.provenance import git_state
from benchmark.storage import atomic_write

log = logging.getLogger("benchmark")


PREPARE_VERSION = 3  # bump whenever a change alters prepared signals (it keys the cache)


CHUNK = 256  # records per unit of work and of resumption


COMPLETE = "COMPLETE"


REPORT_COLUMNS = ("record_id", "stage", "action", "detail", "nan_samples")


# -- the parallel, resumable cache build --------------------------------------------------------
_worker: dict = {}


def _init_worker(reader: RecordReader, fs: int, duration_s: float, prep: Preprocessing, signals_path: str) -> None:
    _worker.update(reader=reader, fs=fs, duration_s=duration_s, prep=prep, signals_path=signals_path)


def _prepare_chunk(start: int, stop: int) -> dict:
    """Rows ``start:stop`` into the memmap (flushed before returning) and what happened to them.

    The memmap is opened per chunk and closed after the flush, so a worker's resident memory
    holds one chunk's pages, not every page it ever wrote (48 GB for MIMIC-IV-ECG at 250 Hz:
    reclaimable, but counted against a job's memory by schedulers that watch RSS)."""
    w = _worker
    signals = np.load(w["signals_path"], mmap_mode="r+")
    lead_mask = np.zeros((stop - start, len(LEADS)), dtype=bool)
    record_fingerprints = np.zeros((stop - start, FINGERPRINT_DIM), dtype=np.float16)
    source_bytes = np.zeros(stop - start, dtype=np.int64)
    notes: list[tuple[int, str, str, int]] = []
    for i in range(start, stop):
        try:
            raw = w["reader"].read(i)
            signal, lead_mask[i - start], record_fingerprints[i - start], record_notes = condition(
                raw, w["fs"], w["duration_s"], w["prep"]
            )
            source_bytes[i - start] = raw.source_bytes
        except RecordError as exc:
            signals[i] = 0.0
            lead_mask[i - start] = False
            notes.append((i, "excluded", str(exc), 0))
            continue
        signals[i] = signal
        notes.extend((i, *note) for note in raw.notes + record_notes)
    signals.flush()
    del signals  # unmapped: its pages leave this process's resident set
    return {
        "start": start,
        "lead_mask": lead_mask,
        "record_fingerprints": record_fingerprints,
        "source_bytes": source_bytes,
        "notes": notes,
    }


def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _save_chunk(progress_dir: Path, result: dict) -> None:
    def write(f):
        np.savez(
            f,
            lead_mask=result["lead_mask"],
            record_fingerprints=result["record_fingerprints"],
            source_bytes=result["source_bytes"],
            notes=np.array(json.dumps(result["notes"])),
        )

    atomic_write(progress_dir / f"chunk-{result['start']:010d}.npz", write)


def cache_params(source: SignalSource, fs: int, prep: Preprocessing, hasher: Hasher) -> dict:
    """Everything the prepared signals depend on (its signature is the cache key)."""
    return {
        "prepare_version": PREPARE_VERSION,
        "dataset": source.dataset,
        "fs": fs,
        "duration_s": prep.duration_s or source.duration_s,
        "preprocessing": asdict(prep),
        "source": source.reader.identity(),
        "content": source.reader.content(hasher),
        "record_ids": digest(np.asarray(source.record_ids, dtype=str).tolist()),
        "n_records": len(source.record_ids),
    }


def prepare_signals(
    source: SignalSource,
    fs: int,
    prep: Preprocessing,
    cache_root: Path,
    workers: int | None = None,
    progress: bool = True,
    hasher: Hasher | None = None,
) -> Path:
    """The folder of the prepared signals at ``fs`` Hz, built (or finished) if needed.
    ``hasher``: the remembered source digests to use (default: those in ``cache_root``)."""
    if prep.bandpass_hz and prep.bandpass_hz[1] >= fs / 2:
        raise DataError(
            f"{source.dataset}: preprocess.bandpass_hz high edge {prep.bandpass_hz[1]:g} Hz must be below "
            f"the Nyquist frequency {fs / 2:g} Hz of the prepared rate; lower it or raise the rate"
        )
    ids = pd.Index(source.record_ids)
    if ids.has_duplicates:
        raise DataError(
            f"{source.dataset}: record ids must be unique; duplicated: "
            f"{', '.join(map(str, ids[ids.duplicated()].unique()[:5]))}"
        )
    workers = workers or default_workers()
    params = cache_params(source, fs, prep, hasher or Hasher.in_cache(cache_root, workers, progress))
    directory = Path(cache_root) / source.dataset / f"fs{fs}-{signature(params)}"
    if not (directory / COMPLETE).is_file():
        directory.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(f"{directory}.lock"):  # concurrent runs (e.g. one per GPU) build it once
            if not (directory / COMPLETE).is_file():
                _build(directory, source, params, prep, workers, progress)
    check_prepared(directory, source, prep.standardize)  # flags only: the prepared arrays stay as they are
    return directory


def _build(
    directory: Path, source: SignalSource, params: dict, prep: Preprocessing, workers: int, progress: bool
) -> None:
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
        atomic_write(directory / "params.json", lambda f: f.write(json.dumps(params, indent=1).encode()))
    done = {int(p.stem.split("-")[1]) for p in progress_dir.glob("chunk-*.npz")}
    todo = [(s, min(s + CHUNK, n)) for s in range(0, n, CHUNK) if s not in done]
    if done:
        log.info(
            "%s: resuming preparation, %d of %d chunks already done", source.dataset, len(done), len(done) + len(todo)
        )

    started = time.perf_counter()
    initargs = (source.reader, fs, duration_s, prep, str(signals_path))
    bar = tqdm(
        total=n,
        initial=n - sum(stop - start for start, stop in todo),
        unit="rec",
        dynamic_ncols=True,
        desc=f"prepare {source.dataset} {fs} Hz",
        disable=not progress,
    )
    workers = min(workers, len(todo))
    try:
        if workers <= 1:
            _init_worker(*initargs)
            for start, stop in todo:
                _save_chunk(progress_dir, _prepare_chunk(start, stop))
                bar.update(stop - start)
        else:
            # spawn: a clean interpreter per worker (fork is unsafe after torch has started threads)
            with ProcessPoolExecutor(
                workers, mp_context=get_context("spawn"), initializer=_init_worker, initargs=initargs
            ) as pool:
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
    _finalize(
        directory, source, params, time.perf_counter() - started, sum(stop - start for start, stop in todo), workers
    )


def _finalize(directory: Path, source: SignalSource, params: dict, wall_s: float, processed: int, workers: int) -> None:
    """Assemble the per-chunk results; the COMPLETE marker is written last."""
    n = len(source.record_ids)
    lead_mask = np.zeros((n, len(LEADS)), dtype=bool)
    record_fingerprints = np.zeros((n, FINGERPRINT_DIM), dtype=np.float16)
    source_bytes = np.zeros(n, dtype=np.int64)
    rows: list[tuple] = []
    for path in sorted((directory / "progress").glob("chunk-*.npz")):
        with np.load(path, allow_pickle=False) as chunk:
            start = int(path.stem.split("-")[1])
            stop = start + len(chunk["lead_mask"])
            lead_mask[start:stop], source_bytes[start:stop] = chunk["lead_mask"], chunk["source_bytes"]
            record_fingerprints[start:stop] = chunk["record_fingerprints"]
            rows.extend(
                (source.record_ids[i], "signal", action, detail, nan)
                for i, action, detail, nan in json.loads(str(chunk["notes"]))
            )
    report = pd.DataFrame(rows, columns=list(REPORT_COLUMNS))
    for name, array in (
        ("lead_mask", lead_mask),
        ("record_fingerprints", record_fingerprints),
        ("record_ids", np.asarray(source.record_ids, dtype=str)),
        ("source_bytes", source_bytes),
    ):
        atomic_write(directory / f"{name}.npy", partial(np.save, arr=array))
    atomic_write(directory / "report.csv", lambda f: report.to_csv(f, index=False))
    excluded = int((~lead_mask.any(axis=1)).sum())
    manifest = {
        **params,
        "usable": n - excluded,
        "excluded": excluded,
        "actions": dict(Counter(report["action"])),
        "nan_samples_interpolated": int(report.loc[report.action == "interpolated", "nan_samples"].sum()),
        "source_bytes_total": int(source_bytes.sum()),
        "signals": {
            "file": "signals.npy",
            "dtype": "float16",
            "shape": [n, len(LEADS), int(round(params["duration_s"] * params["fs"]))],
            "leads": list(LEADS),
            "unit": "mV" if params["preprocessing"]["standardize"] == "none" else "standardised",
        },
        "code": {
            "ecgbench": version("ecgbench"),
            "git": git_state(),
            "packages": {p: version(p) for p in ("wfdb", "scipy", "numpy")},
        },
        "prepared_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "last_session": {
            "records_processed": processed,
            "wall_s": round(wall_s, 3),
            "workers": workers,
            "records_per_s": round(processed / wall_s, 1) if wall_s > 0 and processed else None,
        },
    }
    atomic_write(directory / "manifest.json", lambda f: f.write(json.dumps(manifest, indent=1).encode()))
    atomic_write(directory / COMPLETE, lambda f: f.write(b"ok\n"))
    shutil.rmtree(directory / "progress", ignore_errors=True)
    log.info(
        "%s at %d Hz: %d records prepared, %d excluded, %s; report: %s",
        source.dataset,
        params["fs"],
        n,
        excluded,
        ", ".join(f"{v} {k}" for k, v in manifest["actions"].items() if k != "excluded") or "no repairs",
        directory / "report.csv",
    )
