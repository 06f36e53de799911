"""Content fingerprints of source files: what a dataset *is*, whatever folder it sits in.

The prepared-signal cache and, through it, every result are keyed by the SHA-256 of the files the
records are read from, never by their location: ``./ptbxl`` and ``/data/ptbxl`` (or a copy on
another machine) are the same data, while a second folder with the same record names but other
signals, or a ``.dat`` truncated or rewritten after preparation, is other data.

Hashing 800k MIMIC-IV-ECG records (about 100 GB) on every run would cost minutes, so each file's
digest is remembered in ``<cache root>/file-hashes/<folder key>.npz`` with the file's size,
modification and status-change times (``st_size``, ``st_mtime_ns``, ``st_ctime_ns``): a load
stats every file (seconds for 800k records) and re-hashes only files whose stat changed. The
status-change time cannot be set by a user, so a rewrite that restores the old modification time
is still noticed. As in git's index, a file modified less than :data:`RACY_S` before it was
hashed, or whose status changed that recently, is not remembered (a change within the same
clock tick would keep its stat), so it is hashed again on the next load.

Digests are computed by ``workers`` threads (``hashlib`` releases the GIL on large buffers) and
remembered every :data:`SAVE_EVERY_S` seconds, so an interrupted first hashing of a large
dataset resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from filelock import FileLock
from tqdm.auto import tqdm

from benchmark.storage import atomic_write

log = logging.getLogger("benchmark")

STORE = "file-hashes"  # folder of the remembered digests, in the cache root
RACY_S = 2.0  # files modified this recently when hashed are hashed again next time
SAVE_EVERY_S = 60.0  # remember digests at least this often while hashing many files
BATCH = 2048  # files per unit of hashing work
LOG_BYTES = 10**9  # say so when hashing more than this (it takes a while)

MISSING = bytes(32)  # the digest of a file that does not exist (no real file hashes to zeros)

#: ``refs(content) -> names``: the files a file refers to (a WFDB header: its signal files)
Refs = Callable[[bytes], list[str]]


@dataclass
class Digests:
    """Digests of the files asked for, in order: ``digest`` (N, 32) uint8 (zeros: missing file)
    and, when references were asked for, ``refs[i]``: the names file ``i`` refers to."""

    digest: np.ndarray
    refs: list[list[str]] | None = None


@dataclass
class Hasher:
    """SHA-256 of files, remembered per folder under ``store`` (see the module docstring)."""

    store: Path
    workers: int = 1
    progress: bool = True
    _indexes: dict[Path, _Index] = field(default_factory=dict, repr=False)  # read once per folder

    @classmethod
    def in_cache(cls, cache_root: Path, workers: int = 1, progress: bool = True) -> Hasher:
        return cls(Path(cache_root) / STORE, workers, progress)

    def digests(self, root: str | Path, relpaths: Sequence[str], refs: Refs | None = None) -> Digests:
        """Digests of ``root/relpaths[i]``; with ``refs``, also what each file refers to."""
        folder = Path(root).expanduser().resolve()
        if folder not in self._indexes:
            self._indexes[folder] = _Index(self, folder)
        return self._indexes[folder].digests(list(relpaths), refs)

    def file_digests(self, paths: Sequence[str | Path]) -> list[str]:
        """Hex SHA-256 of each file (remembered like the others; "" for a missing file), one
        lookup per folder."""
        resolved = [Path(p).expanduser().resolve() for p in paths]
        by_folder: dict[Path, list[int]] = {}
        for i, path in enumerate(resolved):
            by_folder.setdefault(path.parent, []).append(i)
        out = [""] * len(resolved)
        for folder, rows in by_folder.items():
            digests = self.digests(folder, [resolved[i].name for i in rows]).digest
            for i, value in zip(rows, digests):
                out[i] = value.tobytes().hex() if value.any() else ""
        return out


def _stat(path: str) -> tuple[int, int, int]:
    """(size, mtime, ctime); -1s for a file that is absent or cannot be reached (reading the record
    reports why)."""
    try:
        st = os.stat(path)
    except OSError:
        return (-1, -1, -1)
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _hash(path: str, want_refs: Refs | None) -> tuple[bytes, list[str]]:
    """(digest, refs); the MISSING digest for a file that vanished meanwhile or cannot be read."""
    try:
        with open(path, "rb") as f:
            if want_refs is None:
                return hashlib.file_digest(f, "sha256").digest(), []
            content = f.read()
    except OSError:
        return MISSING, []
    return hashlib.sha256(content).digest(), want_refs(content)


class _Index:
    """The remembered digests of one folder: arrays sorted by path (bytes), so 1.6M entries cost
    about 150 MB and are looked up with ``np.searchsorted`` instead of a dict of Python objects."""

    def __init__(self, hasher: Hasher, root: Path):
        self.hasher, self.root = hasher, root
        self.file = hasher.store / f"{hashlib.sha256(str(root).encode()).hexdigest()[:16]}.npz"
        self.paths = np.zeros(0, dtype="S1")
        self.stat = np.zeros((0, 3), dtype=np.int64)
        self.digest = np.zeros((0, 32), dtype=np.uint8)
        self.refs = np.zeros(0, dtype="S1")
        self.has_refs = np.zeros(0, dtype=bool)
        self._read()

    def _read(self) -> None:
        try:
            with np.load(self.file, allow_pickle=False) as saved:
                arrays = {k: saved[k] for k in ("paths", "stat", "digest", "refs", "has_refs")}
        except (OSError, ValueError, KeyError):  # absent, or damaged: hash again
            return
        self.paths, self.stat, self.digest = arrays["paths"], arrays["stat"], arrays["digest"]
        self.refs, self.has_refs = arrays["refs"], arrays["has_refs"]

    def _lookup(self, query: np.ndarray) -> np.ndarray:
        """Row of each query path in the arrays, -1 where absent."""
        if not len(self.paths):
            return np.full(len(query), -1)
        row = np.minimum(np.searchsorted(self.paths, query), len(self.paths) - 1)
        return np.where(self.paths[row] == query, row, -1)

    def digests(self, relpaths: list[str], refs: Refs | None) -> Digests:
        query = np.array([p.encode() for p in relpaths], dtype="S") if relpaths else np.zeros(0, dtype="S1")
        absolute = [os.path.join(self.root, p) for p in relpaths]
        stat = np.array([_stat(p) for p in absolute], dtype=np.int64).reshape(-1, 3)
        row = self._lookup(query)
        known = np.zeros(len(relpaths), dtype=bool)
        hit = np.flatnonzero((row >= 0) & (stat[:, 0] >= 0))
        if len(hit):
            same = (self.stat[row[hit]] == stat[hit]).all(axis=1)
            known[hit] = same & self.has_refs[row[hit]] if refs is not None else same
        digest = np.zeros((len(relpaths), 32), dtype=np.uint8)
        digest[known] = self.digest[row[known]]
        found: list[list[str]] | None = None
        if refs is not None:
            found = [[] for _ in relpaths]
            for i in np.flatnonzero(known):
                text = self.refs[row[i]].decode()
                found[i] = text.split("\n") if text else []
        todo = np.flatnonzero(~known & (stat[:, 0] >= 0))
        if len(todo):
            self._hash(todo, query, absolute, stat, refs, digest, found)
        return Digests(digest, found)

    def _hash(self, todo, query, absolute, stat, refs, digest, found) -> None:
        """Hash the files ``todo`` (in place into ``digest``/``found``), remembering them as we go."""
        pending: list[int] = []
        last_save = time.monotonic()
        size = int(stat[todo, 0].sum())
        if size > LOG_BYTES:
            log.info(
                "hashing %d files (%.1f GB) under %s to identify the data by content; done once, remembered in %s",
                len(todo),
                size / 1e9,
                self.root,
                self.file,
            )
        with (
            ThreadPoolExecutor(max(1, self.hasher.workers)) as pool,
            tqdm(
                total=len(todo),
                unit="file",
                desc=f"hash {self.root.name}",
                dynamic_ncols=True,
                disable=not self.hasher.progress or len(todo) < BATCH,
            ) as bar,
        ):
            for start in range(0, len(todo), BATCH):
                batch = todo[start : start + BATCH]
                hashed_at = time.time_ns()
                for i, (value, names) in zip(batch, pool.map(lambda i: _hash(absolute[i], refs), batch)):
                    digest[i] = np.frombuffer(value, dtype=np.uint8)
                    if found is not None:
                        found[i] = names
                    if value != MISSING and stat[i, 1:].max() < hashed_at - RACY_S * 1e9:
                        pending.append(int(i))
                bar.update(len(batch))
                if pending and time.monotonic() - last_save > SAVE_EVERY_S:
                    self._remember(pending, query, stat, digest, found)
                    pending, last_save = [], time.monotonic()
        if pending:
            self._remember(pending, query, stat, digest, found)

    def _remember(self, rows: list[int], query, stat, digest, found) -> None:
        """Merge these entries into the saved index (under a lock: other runs may write it too)."""
        new = {
            "paths": query[rows],
            "stat": stat[rows],
            "digest": digest[rows],
            "refs": np.array(["\n".join(found[i]).encode() for i in rows] if found is not None else [b""] * len(rows)),
            "has_refs": np.full(len(rows), found is not None),
        }
        self.hasher.store.mkdir(parents=True, exist_ok=True)
        with FileLock(f"{self.file}.lock"):
            self._read()  # what other runs remembered meanwhile
            merged = {key: np.concatenate([new[key], getattr(self, key)]) for key in new}
            _, first = np.unique(merged["paths"], return_index=True)  # sorted by path; new entries win
            for key, values in merged.items():
                setattr(self, key, values[first])
            atomic_write(
                self.file,
                lambda f: np.savez(
                    f,
                    root=np.array(str(self.root)),
                    paths=self.paths,
                    stat=self.stat,
                    digest=self.digest,
                    refs=self.refs,
                    has_refs=self.has_refs,
                ),
            )
