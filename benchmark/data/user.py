"""Bring-your-own data: a labels table, patient namespaces and patient-grouped random splits.

The shared base of the ``wfdb-folder`` and ``numpy`` dataset plugins: one label set
(``default``) read from the user's ``labels.csv`` (a ``labels`` column of lists, or one 0/1
column per label), optional ``patient_id`` and ``split`` columns, and a seeded split by patient
when the table has none.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

from benchmark.data.contract import DataError, DatasetConfig
from benchmark.data.files import LABELLED_SPLITS, Annotations, FileDatasetConfig, PreparedDataset, parse_list_cell

log = logging.getLogger("benchmark")


# -- bring-your-own data: a labels table and patient-grouped random splits -----------------------
@dataclass
class RandomSplitConfig(FileDatasetConfig):
    """A file dataset without its own split: patients are split at random (seeded)."""

    val_fraction: float = 0.1  # of patients, when the source gives no split
    test_fraction: float = 0.2
    split_seed: int = 0

    def __post_init__(self):
        super().__post_init__()
        if self.val_fraction < 0 or self.test_fraction < 0 or self.val_fraction + self.test_fraction >= 1:
            raise ValueError("val_fraction and test_fraction must be >= 0 and leave patients for training")


@dataclass
class UserDataConfig(RandomSplitConfig):
    """Settings shared by the bring-your-own datasets (``wfdb-folder``, ``numpy``)."""

    labels_csv: Path | None = None  # default: labels.csv in the root, if present
    empty_labels: str = "exclude"  # an empty label list: exclude (from labelled splits) | negative
    patient_namespace: str = ""  # datasets naming the same patients share it (default: name + root)

    def __post_init__(self):
        super().__post_init__()
        if self.empty_labels not in ("exclude", "negative"):
            raise ValueError(f"empty_labels must be 'exclude' or 'negative', got {self.empty_labels!r}")


class UserDataset(PreparedDataset):
    """Base of the bring-your-own datasets: one label set, a labels table, a patient namespace."""

    Config: ClassVar[type[DatasetConfig]] = UserDataConfig
    config: UserDataConfig  # an instance of Config
    label_sets = ("default",)

    @property
    def patient_namespace(self) -> str:
        return self.config.patient_namespace or f"{self.name}:{self.root}"

    @property
    def labels_path(self) -> Path | None:
        """``labels_csv`` if set, else ``labels.csv`` in the root if there is one."""
        if self.config.labels_csv:
            return Path(self.config.labels_csv).expanduser().resolve()
        default = self.root / "labels.csv"
        return default if default.is_file() else None


RESERVED_COLUMNS: tuple[str, ...] = ("record", "record_id", "patient_id", "split")


def random_patient_splits(patients: np.ndarray, config: RandomSplitConfig) -> np.ndarray:
    """train/val/test by patient, a seeded permutation of the sorted patient ids."""
    unique = np.random.default_rng(config.split_seed).permutation(np.unique(patients[patients != ""]))
    n_test, n_val = round(config.test_fraction * len(unique)), round(config.val_fraction * len(unique))
    assignment = {p: "test" for p in unique[:n_test]} | {p: "val" for p in unique[n_test : n_test + n_val]}
    return np.array([assignment.get(p, "train") if p else "" for p in patients], dtype=object).astype(str)


def annotate_user_table(
    table: pd.DataFrame, path: Path, config: UserDataConfig, with_labels: bool, default_patients: np.ndarray
) -> Annotations:
    """Annotations from a user's labels table, rows aligned with the records.

    Labels: a ``labels`` column of lists (``['A', 'B']`` or ``A;B``), or else one 0/1 column
    per label (all zeros = a negative row). Optional ``patient_id`` (default: each record is its
    own patient) and ``split`` (train/val/test; default: a seeded split by patient).
    """
    if "patient_id" in table.columns:
        patients = table["patient_id"].fillna("").astype(str).str.strip().to_numpy(dtype=str)
    else:
        log.warning(
            "%s has no patient_id column: each record counts as its own patient, so splits are "
            "patient-disjoint only if every patient has one record",
            path,
        )
        patients = default_patients
    problems: dict[int, str] = {}
    if "split" in table.columns:
        splits = table["split"].fillna("").astype(str).str.strip().str.lower().to_numpy(dtype=object)
        for row in np.flatnonzero(~np.isin(splits, LABELLED_SPLITS)):
            problems[int(row)] = f"split {table['split'].iloc[row]!r} is not train, val or test"
            splits[row] = ""
        splits = splits.astype(str)
    else:
        splits = random_patient_splits(patients, config)
    annotations = Annotations(patients, splits, problems=problems, split_source=str(path))
    if not with_labels:
        return annotations
    labels: list[list[str] | None] = []
    if "labels" in table.columns:
        for i, cell in enumerate(table["labels"]):
            try:
                tokens = parse_list_cell(cell, separator=";")
            except ValueError as exc:
                problems.setdefault(i, str(exc))
                tokens = None
            if tokens == [] and config.empty_labels == "exclude":
                problems.setdefault(i, "empty label list (set empty_labels=negative to use it as a negative)")
                tokens = None
            labels.append(None if i in problems else tokens)
        annotations.empty_is_negative = config.empty_labels == "negative"
    else:
        columns = [c for c in table.columns if c not in RESERVED_COLUMNS]
        if not columns:
            raise DataError(f"{path} has no label columns: add a 'labels' column of lists, or one 0/1 column per label")
        values = table[columns].astype(str).apply(lambda s: s.str.strip().str.lower())
        positive = values.isin(("1", "1.0", "true")).to_numpy()
        valid = positive | values.isin(("0", "0.0", "false")).to_numpy()
        unusable = [c for c, ok in zip(columns, valid.any(axis=0)) if not ok and table[c].notna().any()]
        if unusable:
            seen = sorted(set(table[unusable[0]].dropna().astype(str).str.strip()))[:4]
            raise DataError(
                f"{path}: label column(s) {', '.join(map(repr, unusable))} hold no 0/1 value (e.g. "
                f"{', '.join(map(repr, seen))}); write each label as 1 (present) or 0 (absent), or true/false"
            )
        for row in np.flatnonzero(~valid.all(axis=1)):
            bad = columns[int(np.argmin(valid[row]))]
            problems.setdefault(
                int(row), f"unparsable label cell {table[bad].iloc[row]!r} in column {bad!r} (expected 0 or 1)"
            )
        names = np.array(columns, dtype=object)
        labels = [None if i in problems else names[positive[i]].tolist() for i in range(len(table))]
        annotations.empty_is_negative = True
    annotations.labels = labels
    return annotations
