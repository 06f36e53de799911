"""The unit of work, how processes share it out, and claims so that none is done twice.

A :class:`Unit` is one pretrained model (a method at a seed) and the cells evaluated on it.
Processes share a run out by units, never by cells, so pretraining is never duplicated:
``--shard I/N`` takes every N-th unit of the run (:class:`Shard`), a launcher gives each of its
tasks one unit (:mod:`benchmark.run.launch`).

Processes that run into one results folder at the same time (shards, launched tasks, or two
commands a user started) coordinate through claims. A process that works on a unit holds its
claim: an exclusive ``flock`` (through ``filelock``) on
``OUT/_locks/DATASET/PRESET/METHOD_seedSEED.lock``, METHOD the method's file name
(``lamae@la_mask_ratio=0``). The kernel drops the lock when its holder dies, however it dies,
so a killed run never leaves a stale claim behind.
``flock`` works across the nodes of NFS (v4) and of Lustre mounted with ``flock``, the usual
shared file systems of a SLURM cluster.

Who holds a claim is written beside the lock, in ``METHOD_seedSEED.owner.json`` (the lock file
belongs to ``filelock``, which opens it truncating, so it cannot carry information)::

    {"host": "node17", "pid": 4242, "started": "2025-01-31T12:00:00+00:00",
     "dataset": "synthetic", "preset": "cpu", "method": "lamae", "seed": 0,
     "cells": ["synthetic/conditions/cpu/lamae/linear_seed0.json", ...]}

``cells`` are the result files (relative to the results folder) the owner will write. The owner
deletes the file before it releases the claim; one left behind by a killed owner is overwritten
by the next, or deleted by :func:`clear_interrupted` when a run starts. :func:`claims` reads them
all and tells which are held right now (``running``) and which were left by a killed process
(``interrupted``): what a ``status`` command shows.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from benchmark.config import ConfigError
from benchmark.nn import distributed
from benchmark.storage import atomic_write, host

log = logging.getLogger("benchmark")

LOCKS = "_locks"
OWNER_SUFFIX = ".owner.json"
POLL_S = 10.0  # a waiting process re-tries this often (under torchrun the ranks agree between tries)


@dataclass(frozen=True)
class Unit:
    """One pretrained model: a method (its canonical name, :attr:`MethodSpec.name
    <benchmark.method.spec.MethodSpec.name>`) at a seed. It names its method rather than holding
    the spec because it travels, pickled, to launched tasks, and a spec holds classes that an
    external encoder registers at run time; the run's plan maps the name to the spec."""

    seed: int
    method: str

    def describe(self) -> str:
        return f"{self.method} / seed {self.seed}"


@dataclass(frozen=True)
class Shard:
    """Share ``index`` of ``count`` (0-based): every ``count``-th unit of the run, counted over all
    its units, finished or not, so shards started at different times never disagree."""

    index: int
    count: int

    def __post_init__(self):
        if not 0 <= self.index < self.count:
            raise ConfigError(f"--shard {self.index}/{self.count}: need 0 <= I < N (shards are numbered from 0)")

    @classmethod
    def parse(cls, text: str) -> Shard:
        index, _, count = text.partition("/")
        if not (index.strip().isdigit() and count.strip().isdigit()):
            raise ConfigError(f"--shard {text!r}: write I/N, e.g. 0/4 for the first of four shards")
        return cls(int(index), int(count))

    def selects(self, position: int) -> bool:
        return position % self.count == self.index


def lock_path(results_root: Path, dataset: str, preset: str, method_file_name: str, seed: int) -> Path:
    """The claim of a method (its file name, ``lamae@la_mask_ratio=0``) at a seed."""
    return Path(results_root) / LOCKS / dataset / preset / f"{method_file_name}_seed{seed}.lock"


def owner_path(lock_path: Path) -> Path:
    return lock_path.with_name(lock_path.name.removesuffix(".lock") + OWNER_SUFFIX)


def _try_acquire(lock: FileLock, timeout: float) -> bool:
    try:
        lock.acquire(timeout=timeout)
    except Timeout:
        return False
    return True


def _read_owner(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # released meanwhile, or being replaced
        return None


@contextlib.contextmanager
def claimed(lock_path: Path, owner: dict, wait: bool) -> Iterator[bool]:
    """Hold the claim at ``lock_path`` for the block; yields whether it is held.

    With ``wait`` False, yields False at once if another process holds it. With ``wait`` True,
    waits until the holder is done. Under ``torchrun`` rank 0 claims for all ranks and every rank
    yields the same answer (they re-agree every :data:`POLL_S` seconds while waiting, so a long wait
    never trips the process group's timeout).
    """
    lock = FileLock(str(lock_path)) if distributed.is_main() else None
    if lock is not None:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
    held, told = False, False
    while True:
        attempt = _try_acquire(lock, POLL_S if wait else 0) if lock is not None else None
        held = bool(distributed.broadcast_object(attempt))
        if held or not wait:
            break
        if not told:
            holder = _read_owner(owner_path(lock_path)) or {}
            log.info(
                "waiting for %s (pid %s on %s) to finish %s",
                lock_path.stem,
                holder.get("pid", "?"),
                holder.get("host", "?"),
                lock_path.parent,
            )
            told = True
    if not held:
        yield False
        return
    owner_file = owner_path(lock_path)
    if lock is not None:
        started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        record = {"host": host(), "pid": os.getpid(), "started": started, **owner}
        atomic_write(owner_file, json.dumps(record, indent=1))
    try:
        yield True
    finally:
        if lock is not None:
            owner_file.unlink(missing_ok=True)
            lock.release()


def _owner_files(results_root: Path) -> list[Path]:
    return sorted((Path(results_root) / LOCKS).rglob(f"*{OWNER_SUFFIX}"))


def _lock_of(owner_file: Path) -> FileLock:
    return FileLock(str(owner_file.with_name(owner_file.name.removesuffix(OWNER_SUFFIX) + ".lock")))


def claims(results_root: Path) -> list[dict]:
    """Every claim recorded under ``results_root``: the owner record plus ``state``, ``running``
    (its lock is held now) or ``interrupted`` (its owner died before finishing)."""
    found = []
    for path in _owner_files(results_root):
        record = _read_owner(path)
        if record is None:
            continue
        probe = _lock_of(path)
        if _try_acquire(probe, 0):
            probe.release()
            if not path.exists():  # its owner finished while we looked
                continue
            record["state"] = "interrupted"
        else:
            record["state"] = "running"
        found.append(record)
    return found


def clear_interrupted(results_root: Path) -> int:
    """Delete the owner files of claims whose owners died (a new run takes their work over, or it
    is finished); returns how many. Each is deleted while its lock is held here, so a live owner's
    file is never touched."""
    cleared = 0
    for path in _owner_files(results_root):
        probe = _lock_of(path)
        if _try_acquire(probe, 0):
            try:
                if path.exists():
                    path.unlink()
                    cleared += 1
            finally:
                probe.release()
    return cleared
