"""Record readers: one record of a source in mV, with its channel names and sampling rate.

A :class:`SignalSource` lists a dataset's records (in cache row order) and carries a picklable
reader: :class:`WfdbReader` reads WFDB ``.hea`` + ``.dat``/``.mat`` with ``wfdb``;
:class:`NumpyReader` reads rows of a ``.npy``. A reader raises :class:`RecordError` (the reason
goes to the preparation report) for a record that cannot be used: a missing or truncated file, a
header that disagrees with its signal file or with the dataset's declared rate.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

import numpy as np
import wfdb
from scipy.io import whosmat

log = logging.getLogger("benchmark")


# bits per sample of the byte-aligned uncompressed WFDB formats (WFDB signal(5)); files in other
# formats are not size-checked (wfdb itself refuses a file too short for its header)
WFDB_BITS = {"8": 8, "16": 16, "61": 16, "80": 8, "160": 16, "24": 24, "32": 32}


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
            raise RecordError(
                f"header {header_path} declares {record.fs:g} Hz but this dataset's records here "
                f"are {self.declared_fs:g} Hz"
            )
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
    for name, fmt, offset, spf in zip(
        header.file_name, header.fmt, header.byte_offset or [None] * n, header.samps_per_frame or [1] * n
    ):
        groups.setdefault(name, []).append((fmt, offset or 0, spf or 1))
    total = 0
    for name, signals in groups.items():
        path = os.path.join(directory, name)
        if not os.path.isfile(path):
            raise RecordError(f"signal file {path} is missing")
        size = os.path.getsize(path)
        total += size
        if name.lower().endswith(".mat"):
            _check_mat(path, header_path, len(signals), header.sig_len)
        fmt, offset = signals[0][0], signals[0][1]
        if header.sig_len and fmt in WFDB_BITS and all(s[0] == fmt for s in signals):
            expected = offset + header.sig_len * sum(spf for _, _, spf in signals) * WFDB_BITS[fmt] // 8
            if size != expected:
                problem = "truncated" if size < expected else "longer than its header says"
                raise RecordError(
                    f"signal file {path} has {size} bytes but {header_path} declares "
                    f"{header.sig_len} samples x {len(signals)} signals = {expected} bytes ({problem})"
                )
    return total


def _check_mat(path: str, header_path: str, n_sig: int, sig_len: int) -> None:
    """A PhysioNet/CinC ``.mat`` holds one int16 matrix ``val`` of (signals, samples); wfdb reads it
    by byte offset alone, so another variable name or layout would be read as garbage."""
    try:
        variables = {name: shape for name, shape, _ in whosmat(path)}
    except Exception as exc:  # any unreadable file is this record's problem
        raise RecordError(f"signal file {path} is not a readable MATLAB file ({type(exc).__name__}: {exc})") from None
    if "val" not in variables:
        raise RecordError(
            f"signal file {path} has no variable 'val' (it has {', '.join(variables) or 'none'}); the "
            f"Challenge layout stores the signals as val (signals x samples): rewrite it so"
        )
    if tuple(variables["val"]) != (n_sig, sig_len):
        raise RecordError(
            f"signal file {path} holds val of shape {tuple(variables['val'])} but {header_path} declares "
            f"{n_sig} signals x {sig_len} samples: expected ({n_sig}, {sig_len})"
        )


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
        return {
            "reader": "numpy",
            "file_bytes": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "shape": list(array.shape),
            "dtype": str(array.dtype),
            "channels": list(self.channels),
            "fs": self.fs,
            "scale_to_mv": self.scale_to_mv,
        }

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
