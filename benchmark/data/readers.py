"""Record readers: one record of a source in mV, with its channel names and sampling rate.

A :class:`SignalSource` lists a dataset's records (in cache row order) and carries a picklable
reader: :class:`WfdbReader` reads WFDB ``.hea`` + ``.dat``/``.mat``; :class:`NumpyReader` reads
rows of a ``.npy``. A reader raises :class:`RecordError` (the reason goes to the preparation
report) for a record that cannot be used: a missing or truncated file, a header that disagrees
with its signal file or with the dataset's declared rate.

WFDB records in format 16 or 212 (PTB-XL, MIMIC-IV-ECG, LUDB, the CinC Challenge's ``.mat``
files: format 16 after a 24-byte MATLAB v4 header) are read directly with NumPy, the header
parsed by :mod:`benchmark.data.wfdb_header`; any other record goes to ``wfdb.rdrecord``.
Signals are those of ``wfdb.rdsamp`` bit for bit (same integer samples, ``(d - baseline) / gain``
in float64, WFDB's invalid-sample value as NaN; tested on every real record we have), at a
fraction of the time: ``wfdb`` spends most of a record's time parsing its header.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import posixpath
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import numpy as np
import wfdb

from benchmark.data.content import Hasher
from benchmark.data.wfdb_header import Header, HeaderError, SignalSpec, mv_per_unit, parse_header, read_header

log = logging.getLogger("benchmark")


#: bits per sample of the WFDB formats whose file size follows from the header (WFDB signal(5));
#: files in other formats are not size-checked (wfdb itself refuses a file too short for them)
WFDB_BITS = {"8": 8, "16": 16, "61": 16, "80": 8, "160": 16, "212": 12, "24": 24, "32": 32}

#: formats read with NumPy; the value is WFDB's invalid-sample code (read as NaN, as wfdb does)
NUMPY_FORMATS = {"16": -32768, "212": -2048}

#: MATLAB v4 matrix type of CinC ``.mat`` signals: little-endian, int16, full (1000*M + 10*P + T)
MAT_V4_INT16_LE = 30


class RecordError(Exception):
    """This record cannot be used; the message (the reason) goes to the report."""


Note = tuple[str, str, int]  # (action, detail, NaN samples involved), a line of the report


@dataclass
class RawRecord:
    signal: np.ndarray  # (channels, samples) float64 in mV, NaN where the source marks no sample
    fs: float
    channels: list[str]
    source_bytes: int  # size of the files read, for the manifest
    notes: list[Note] = field(default_factory=list)  # what the reader noticed (kept record)


class RecordReader(Protocol):
    """What the cache needs of a reader (:class:`WfdbReader`, :class:`NumpyReader`)."""

    def identity(self) -> dict:
        """Which records, read how; nothing about where the files are (it keys the cache)."""
        ...

    def content(self, hasher: Hasher) -> str:
        """Fingerprint of the bytes :meth:`read` reads, for every record (it keys the cache)."""
        ...

    def read(self, i: int) -> RawRecord: ...


def digest(items: list[str]) -> str:
    return hashlib.sha256("\n".join(items).encode()).hexdigest()


@dataclass
class WfdbReader:
    """WFDB records ``root/paths[i]`` (``.hea`` + ``.dat``, or ``.mat`` as in PhysioNet/CinC).

    ``declared_fs``: the rate this dataset's records have (PTB-XL records100: 100 Hz); a header
    that says otherwise marks a damaged or misplaced record, which is excluded. ``engine``:
    ``auto`` reads formats 16 and 212 with NumPy and the rest with ``wfdb``; ``wfdb`` reads every
    record with ``wfdb.rdrecord`` (the reference the NumPy path is tested and timed against).
    """

    root: str
    paths: list[str]
    declared_fs: float | None = None
    engine: str = "auto"

    def __post_init__(self):
        if self.engine not in ("auto", "wfdb"):
            raise ValueError(f"WfdbReader engine must be 'auto' or 'wfdb', got {self.engine!r}")

    def identity(self) -> dict:
        return {
            "reader": "wfdb",
            "engine": self.engine,
            "declared_fs": self.declared_fs,
            "records": digest(self.paths),  # relative paths: part of what the dataset is, not where
        }

    def content(self, hasher: Hasher) -> str:
        """SHA-256 over every record's header and the signal files its header names, in order."""
        headers = [f"{path}.hea" for path in self.paths]
        head = hasher.digests(self.root, headers, refs=_signal_file_names)
        assert head.refs is not None
        signal_paths = [
            posixpath.join(posixpath.dirname(h), name) for h, names in zip(headers, head.refs) for name in names
        ]
        signals = hasher.digests(self.root, signal_paths).digest
        fingerprint = hashlib.sha256()
        k = 0
        for i, names in enumerate(head.refs):
            fingerprint.update(head.digest[i].tobytes())
            for name in names:
                fingerprint.update(name.encode() + b"\0" + signals[k].tobytes())
                k += 1
        return fingerprint.hexdigest()

    def read(self, i: int) -> RawRecord:
        base = os.path.join(self.root, self.paths[i])
        header_path = base + ".hea"
        if not os.path.isfile(header_path):
            raise RecordError(f"header file {header_path} is missing")
        try:
            header = read_header(header_path)
        except HeaderError as exc:
            raise RecordError(f"header {exc}") from None
        except OSError as exc:
            raise RecordError(f"header {header_path} cannot be read ({exc.strerror})") from None
        if self.declared_fs is not None and not math.isclose(header.fs, self.declared_fs):
            raise RecordError(
                f"header {header_path} declares {header.fs:g} Hz but this dataset's records here "
                f"are {self.declared_fs:g} Hz"
            )
        directory = os.path.dirname(base)
        size = os.path.getsize(header_path) + check_signal_files(header, header_path, directory)
        if self.engine == "auto" and numpy_readable(header):
            signal, notes = read_numpy(header, header_path, directory)
        else:
            signal, notes = _read_with_wfdb(base, header_path), []
        return _in_millivolts(signal, header, size, notes)


def _signal_file_names(content: bytes) -> list[str]:
    """The signal files a header names (none if it cannot be parsed: reading reports why)."""
    try:
        return parse_header(content.decode("latin-1")).files()
    except HeaderError:
        return []


def numpy_readable(header: Header) -> bool:
    """Whether :func:`read_numpy` reads this record (else ``wfdb`` does): formats 16/212, one
    sample per frame, no skew, a known length, one format per file, no multi-segment record."""
    if header.n_seg is not None or header.sig_len is None or not header.signals:
        return False
    formats: dict[str, str] = {}
    for s in header.signals:
        if s.fmt not in NUMPY_FORMATS or s.samps_per_frame != 1 or s.skew or s.file_name == "~":
            return False
        if formats.setdefault(s.file_name, s.fmt) != s.fmt:
            return False
    return True


def _groups(header: Header) -> dict[str, list[int]]:
    """Signal indices per signal file, in header order (a file holds its signals frame-interleaved)."""
    groups: dict[str, list[int]] = {}
    for k, s in enumerate(header.signals):
        groups.setdefault(s.file_name, []).append(k)
    return groups


def _digital(header: Header, directory: str) -> list[tuple[list[int], np.ndarray]]:
    """(signal indices, (sig_len, n) integer samples) per signal file."""
    assert header.sig_len is not None
    out = []
    for name, indices in _groups(header).items():
        first: SignalSpec = header.signals[indices[0]]
        count = header.sig_len * len(indices)
        path = os.path.join(directory, name)
        if first.fmt == "16":
            samples = np.fromfile(path, dtype="<i2", count=count, offset=first.byte_offset)
        else:
            packed = np.fromfile(path, dtype=np.uint8, count=math.ceil(count * 1.5), offset=first.byte_offset)
            samples = unpack_212(packed, count)
        out.append((indices, samples.reshape(header.sig_len, len(indices))))
    return out


def read_numpy(header: Header, header_path: str, directory: str) -> tuple[np.ndarray, list[Note]]:
    """(n_sig, sig_len) float64 in the header's units, as ``wfdb.rdrecord(...).p_signal.T``, and a
    note per signal whose checksum disagrees (:func:`checksum_notes`)."""
    assert header.sig_len is not None
    signal = np.empty((header.n_sig, header.sig_len))
    notes: list[Note] = []
    for indices, samples in _digital(header, directory):
        specs = [header.signals[k] for k in indices]
        physical = samples.T.astype(np.float64)
        # wfdb's dac(): subtract the baseline, divide by the gain, invalid samples to NaN
        np.subtract(physical, np.array([[s.baseline] for s in specs]), out=physical)
        np.divide(physical, np.array([[s.adc_gain] for s in specs]), out=physical)
        physical[samples.T == NUMPY_FORMATS[specs[0].fmt]] = np.nan
        signal[indices] = physical
        notes += checksum_notes(specs, samples, header_path)
    return signal, notes


def unpack_212(packed: np.ndarray, count: int) -> np.ndarray:
    """Format 212: pairs of 12-bit two's-complement samples in 3 bytes (WFDB signal(5)): the first
    sample is byte 0 plus the low nibble of byte 1 as its high bits, the second is byte 2 plus the
    high nibble of byte 1."""
    padded = np.zeros(3 * math.ceil(len(packed) / 3), dtype=np.int16)
    padded[: len(packed)] = packed
    triples = padded.reshape(-1, 3)
    pairs = np.empty((len(triples), 2), dtype=np.int16)
    pairs[:, 0] = triples[:, 0] | ((triples[:, 1] & 0x0F) << 8)
    pairs[:, 1] = triples[:, 2] | ((triples[:, 1] & 0xF0) << 4)
    samples = pairs.reshape(-1)[:count]
    return (samples ^ 0x800) - 0x800  # sign-extend 12 bits


def checksum_notes(specs: list[SignalSpec], samples: np.ndarray, header_path: str) -> list[Note]:
    """A note per signal whose samples do not sum to its header checksum (16 bits, compared modulo
    2^16: PTB-XL writes it unsigned, others signed): bytes changed after the header was written.
    A note, not an exclusion: wfdb ignores checksums, and a wrong one may be the header's fault."""
    notes: list[Note] = []
    for s, total in zip(specs, samples.sum(axis=0, dtype=np.int64)):
        if s.checksum is not None and (int(total) - s.checksum) % 65536:
            notes.append(
                (
                    "checksum mismatch",
                    f"{s.description or s.file_name}: samples in {s.file_name} sum to {int(total) % 65536} "
                    f"(mod 2^16) but {header_path} says {s.checksum % 65536}: the file changed after its header "
                    f"was written, or the header is wrong",
                    0,
                )
            )
    return notes


def _read_with_wfdb(base: str, header_path: str) -> np.ndarray:
    try:
        record = wfdb.rdrecord(base)
    except Exception as exc:  # any failure on a user's file is this record's problem
        raise RecordError(f"signal of {base} cannot be read by wfdb ({type(exc).__name__}: {exc})") from None
    return record.p_signal.T


def _in_millivolts(signal: np.ndarray, header: Header, size: int, notes: list[Note]) -> RawRecord:
    """Channels scaled to mV by their units; a channel in a non-voltage unit is left out, with a note."""
    keep, channels = [], []
    for k, s in enumerate(header.signals):
        factor = mv_per_unit(s.units)
        if factor is None:
            notes.append(("channel ignored", f"{s.description!r} (channel {k}) is in {s.units!r}, not a voltage", 0))
            continue
        if factor != 1.0:
            signal[k] *= factor
        keep.append(k)
        channels.append(s.description)
    if len(keep) < len(header.signals):
        signal = signal[keep]
    return RawRecord(signal, float(header.fs), channels, size, notes)


def check_signal_files(header: Header, header_path: str, directory: str) -> int:
    """Total size of the signal files; RecordError if one is missing or its size disagrees with
    the header's sample count (wfdb silently ignores surplus bytes), or a ``.mat`` file's MATLAB
    header disagrees with the WFDB header."""
    total = 0
    for name, indices in _groups(header).items():
        if name == "~":
            continue
        path = os.path.join(directory, name)
        if not os.path.isfile(path):
            raise RecordError(f"signal file {path} is missing")
        size = os.path.getsize(path)
        total += size
        specs = [header.signals[k] for k in indices]
        fmt, offset = specs[0].fmt, specs[0].byte_offset
        if header.sig_len and fmt in WFDB_BITS and all(s.fmt == fmt for s in specs):
            frame = sum(s.samps_per_frame for s in specs)
            expected = offset + math.ceil(header.sig_len * frame * WFDB_BITS[fmt] / 8)
            if size != expected:
                problem = "truncated" if size < expected else "longer than its header says"
                raise RecordError(
                    f"signal file {path} has {size} bytes but {header_path} declares "
                    f"{header.sig_len} samples x {len(specs)} signals = {expected} bytes ({problem})"
                )
            if name.lower().endswith(".mat") and fmt == "16" and offset:
                _check_mat_header(path, header, len(specs), offset, header_path)
    return total


def _check_mat_header(path: str, header: Header, n_signals: int, offset: int, header_path: str) -> None:
    """A CinC ``.mat`` is a MATLAB v4 file: 20 bytes (type, rows, columns, imaginary flag, name
    length), the variable name, then the int16 matrix (signals x samples, column-major, i.e. the
    frames of WFDB format 16). Its own header must describe the matrix the WFDB header does."""
    mat_type, rows, columns, imaginary, name_length = (int(v) for v in np.fromfile(path, dtype="<i4", count=5))
    if (mat_type, rows, columns, imaginary, 20 + name_length) != (
        MAT_V4_INT16_LE,
        n_signals,
        header.sig_len,
        0,
        offset,
    ):
        raise RecordError(
            f"signal file {path} is not the little-endian int16 MATLAB v4 matrix of {n_signals} signals x "
            f"{header.sig_len} samples starting at byte {offset} that {header_path} describes (its MATLAB "
            f"header says type {mat_type}, {rows} x {columns}, data at byte {20 + name_length})"
        )
    with open(path, "rb") as f:
        f.seek(20)
        name = f.read(name_length).rstrip(b"\0").decode("latin-1")
    if name != "val":  # the Challenge's variable; another one is not the signal the header describes
        raise RecordError(
            f"signal file {path} holds the variable {name!r}, not 'val' (the PhysioNet/CinC layout stores the "
            f"signals as val, signals x samples); rewrite it so"
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
        array = _open_npy(self.path)
        return {
            "reader": "numpy",
            "shape": list(array.shape),
            "dtype": str(array.dtype),
            "channels": list(self.channels),
            "fs": self.fs,
            "scale_to_mv": self.scale_to_mv,
        }

    def content(self, hasher: Hasher) -> str:
        return hasher.file_digests([self.path])[0]

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
    #: (N,) str, the database each record comes from (the gain check summarises per source); None: the dataset
    sources: np.ndarray | None = None

    @classmethod
    def wfdb_folder(
        cls, dataset: str, root: Path, paths: list[str], fs: float, sources: list[str] | None = None
    ) -> SignalSource:
        """WFDB records ``root/paths[i]`` of any rate and length, as the Challenge's layout and a
        user's folder hold them: the first 10 s unless ``preprocess.duration_s`` says otherwise;
        ``fs`` the rate every header must declare (0: any)."""
        return cls(
            dataset,
            np.array(paths, dtype=str),
            WfdbReader(str(root), paths, fs or None),
            10.0,
            sources=None if sources is None else np.array(sources, dtype=str),
        )
