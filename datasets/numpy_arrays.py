"""Bring your own data: NumPy arrays.

The root folder holds ``signals.npy`` (N, C, T) — C channels named by ``leads`` (default the
12 standard leads in the order I, II, III, aVR, aVL, aVF, V1-V6), in mV unless
``scale_to_mv`` says otherwise, sampled at ``fs`` Hz (required) — and the labels as either
``labels.csv`` (N rows in the same order: a ``labels`` column of lists or one 0/1 column per
label; optional ``record_id``, ``patient_id``, ``split``) or ``labels.npy`` (N, K) 0/1 with
optional ``label_names.txt`` (one name per line). Optional ``patient_ids.npy`` (N,).

The arrays go through the same preparation as every dataset (NaN repair, flat-lead masking,
resampling to the preset's rate) into the cache; ``signals.npy`` is read one memory-mapped row
at a time, so it may be larger than RAM. Without patient ids each record is its own patient;
without a ``split`` column patients are split at random (seeded).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

from ecgbench import DATASETS, LEADS, DataError, DatasetConfig
from ecgbench.data import (
    Annotations,
    NumpyReader,
    SignalSource,
    UserDataConfig,
    UserDataset,
    annotate_user_table,
    read_csv,
)

FIX = "see docs/datasets-guide.md, 'Bring your own data', for the NumPy layout"


def load_npy(path: Path, mmap: bool = False) -> np.ndarray:
    """An array file, never unpickled (object arrays could run code): a clear error instead."""
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except ValueError as exc:
        raise DataError(
            f"{path} cannot be read without unpickling ({exc}); save numbers or strings, e.g. "
            f"np.save(path, array.astype(str))"
        ) from None


#: typical QRS amplitude of a record, in mV, outside which the unit is almost surely not mV: a
#: 12-lead ECG's largest deflections are ~0.5-5 mV; µV given as mV reads ~1000 times larger
PLAUSIBLE_MV = (0.05, 20.0)


def check_units(path: Path, signals: np.ndarray, scale_to_mv: float, sample: int = 64) -> None:
    """Refuse arrays that cannot be in mV after ``scale_to_mv``: integers (ADC counts) left
    unscaled, or a typical amplitude (median over a sample of records of each record's 99th
    percentile of |x - median|) outside :data:`PLAUSIBLE_MV`. A µV array read as mV ran silently
    and scored 0.427 instead of 0.550 macro AUROC before this check."""
    if np.issubdtype(signals.dtype, np.integer) and scale_to_mv == 1.0:
        raise DataError(
            f"{path} holds integers ({signals.dtype}), i.e. ADC counts, not mV; give the factor to mV, e.g. "
            f"--set numpy.scale_to_mv=0.001 for µV counts (1/gain in general)"
        )
    rows = np.unique(np.linspace(0, len(signals) - 1, min(sample, len(signals))).astype(int))
    x = np.asarray(signals[rows], dtype=np.float64) * scale_to_mv
    amplitude = float(
        np.nanmedian(np.nanpercentile(np.abs(x - np.nanmedian(x, axis=-1, keepdims=True)), 99, axis=(1, 2)))
    )
    low, high = PLAUSIBLE_MV
    if not low <= amplitude <= high:
        factor = 10 ** round(np.log10(1.0 / amplitude))  # the power of ten that brings it to ~1 mV
        raise DataError(
            f"{path}: typical amplitude {amplitude:.3g} (after scale_to_mv={scale_to_mv:g}) is not plausible for mV "
            f"(expected {low:g}-{high:g}); if the unit is µV use --set numpy.scale_to_mv={scale_to_mv * factor:g}, "
            f"in general the factor that converts your unit to mV"
        )


@dataclass
class NumpyConfig(UserDataConfig):
    fs: float = 0.0  # sampling rate of signals.npy, Hz (required)
    leads: tuple[str, ...] = LEADS  # names of signals.npy's channels, in order (matched case-insensitively)
    scale_to_mv: float = 1.0  # factor to mV, e.g. 0.001 for uV

    def __post_init__(self):
        super().__post_init__()
        if self.fs < 0 or self.scale_to_mv <= 0:
            raise ValueError("numpy: fs must be > 0 and scale_to_mv > 0")


@DATASETS.register("numpy")
class NumpyArrays(UserDataset):
    summary = "your NumPy arrays (--root PATH): signals.npy N x 12 x T + labels.csv/.npy (+ patient ids)"
    Config: ClassVar[type[DatasetConfig]] = NumpyConfig

    @cached_property
    def signals_path(self) -> Path:
        path = self.root / "signals.npy"
        if not path.is_file():
            raise DataError(f"{path} not found; {FIX}")
        shape = load_npy(path, mmap=True).shape
        if len(shape) != 3 or shape[1] != len(self.config.leads):
            raise DataError(
                f"{path} has shape {shape}; expected (N, {len(self.config.leads)}, T) with channels named "
                f"by numpy.leads ({','.join(self.config.leads)})"
            )
        if not self.config.fs:
            raise DataError(f"{self.name}: the sampling rate of {path} is unknown; give it with --set numpy.fs=500")
        check_units(path, load_npy(path, mmap=True), self.config.scale_to_mv)
        return path

    @property
    def n_records(self) -> int:
        return load_npy(self.signals_path, mmap=True).shape[0]

    @cached_property
    def table(self) -> tuple[pd.DataFrame, Path] | None:
        """The labels table (with patient ids if given) and the file it came from."""
        if self.labels_path is not None:
            table, source = read_csv(self.labels_path, (), FIX, dtype=str), self.labels_path
        elif (self.root / "labels.npy").is_file():
            source = self.root / "labels.npy"
            values = load_npy(source)
            names_file = self.root / "label_names.txt"
            names = (
                names_file.read_text().split()
                if names_file.is_file()
                else [f"label_{k}" for k in range(values.shape[1])]
            )
            if values.ndim != 2 or len(names) != values.shape[1]:
                raise DataError(
                    f"{source} must be (N, K) with K = {len(names)} names in label_names.txt; got {values.shape}"
                )
            table = pd.DataFrame(values.astype(str), columns=names)
        else:
            return None
        ids = self.root / "patient_ids.npy"
        if ids.is_file() and "patient_id" not in table.columns:
            table["patient_id"] = load_npy(ids).astype(str)
        if len(table) != self.n_records:
            raise DataError(
                f"{source} has {len(table)} rows but {self.signals_path} has {self.n_records} records; "
                f"they must match row by row"
            )
        return table, source

    def label_files(self):
        files = [self.table[1]] if self.table is not None else []
        return files + [p for p in (self.root / "label_names.txt", self.root / "patient_ids.npy") if p.is_file()]

    def signal_source(self, fs: int) -> SignalSource:
        cfg = self.config
        table = self.table[0] if self.table is not None else None
        ids = (
            table["record_id"].astype(str).to_numpy(dtype=str)
            if table is not None and "record_id" in table.columns
            else np.arange(self.n_records).astype(str)
        )
        reader = NumpyReader(str(self.signals_path), tuple(cfg.leads), float(cfg.fs), cfg.scale_to_mv)
        return SignalSource(self.name, ids, reader, load_npy(self.signals_path, mmap=True).shape[2] / cfg.fs)

    def annotate(self, source: SignalSource, label_set: str | None) -> Annotations:
        records = np.asarray(source.record_ids, dtype=str)
        if self.table is None:
            if label_set is not None:
                raise DataError(
                    f"{self.name}: no labels.csv or labels.npy in {self.root}; {FIX}. Unlabelled arrays "
                    f"can still pretrain: --pretrain-data {self.name}:{self.root}"
                )
            ids = self.root / "patient_ids.npy"
            table = (
                pd.DataFrame({"patient_id": load_npy(ids).astype(str)})
                if ids.is_file()
                else pd.DataFrame(index=records)
            )
            return annotate_user_table(table, self.root, self.config, False, records)
        table, path = self.table
        return annotate_user_table(table, path, self.config, label_set is not None, records)
