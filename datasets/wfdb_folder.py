"""Bring your own data: a folder of WFDB records, labelled by a CSV or by ``# Dx:`` headers.

Two layouts, chosen by whether a labels table exists (``labels_csv``, default ``labels.csv`` in
the root):

- **Records + labels CSV**: column ``record`` (path below the root without extension, e.g.
  ``site1/ecg0001``), labels as a ``labels`` column of lists (``['AF', 'LBBB']`` or ``AF;LBBB``)
  or one 0/1 column per label, optional ``patient_id`` and ``split`` (train/val/test).
- **PhysioNet/CinC Challenge 2020-21** (Perez Alday et al. 2020; Reyna et al. 2021): every
  ``*.hea`` below the root, signals in ``.mat`` (read by wfdb) or ``.dat``, labels the SNOMED CT
  codes of the ``# Dx:`` header comment. The challenge has no patient ids, so each record is
  its own patient.

Without a ``split`` column, patients are split at random (seeded) into train/val/test. Records
of any sampling rate are resampled (set ``fs`` to exclude records whose header says otherwise);
the first ``preprocess.duration_s`` (default 10) seconds are used, shorter records are excluded.
A folder without labels still serves as unlabelled data: ``run --pretrain-data wfdb-folder:PATH``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

import numpy as np
import pandas as pd

from ecgbench import DATASETS, DataError, DatasetConfig
from ecgbench.data import (
    Annotations,
    SignalSource,
    UserDataConfig,
    UserDataset,
    annotate_user_table,
    header_records,
    random_patient_splits,
    read_csv,
    read_dx_lines,
)

FIX = "see docs/datasets-guide.md, 'Bring your own data', for the labels.csv layout"


@dataclass
class WfdbFolderConfig(UserDataConfig):
    fs: float = 0.0  # the records' sampling rate; 0: accept each header's rate (others are excluded if set)


@DATASETS.register("wfdb-folder")
class WfdbFolder(UserDataset):
    summary = "your WFDB records (--root PATH) + labels.csv, or the PhysioNet/CinC 2020-21 layout (# Dx: SNOMED)"
    Config: ClassVar[type[DatasetConfig]] = WfdbFolderConfig

    @cached_property
    def table(self) -> pd.DataFrame | None:
        if self.labels_path is None:
            return None
        table = read_csv(self.labels_path, ("record",), FIX, dtype=str)
        table["record"] = table["record"].str.strip().str.removesuffix(".hea")
        return table

    @cached_property
    def record_paths(self) -> list[str]:
        if self.table is not None:
            return self.table["record"].fillna("").tolist()
        return header_records(self.name, self.root, f"no labels.csv either; {FIX}")

    def label_files(self):
        if self.table is not None:
            return [self.labels_path]
        return [self.root / f"{path}.hea" for path in self.record_paths if (self.root / f"{path}.hea").is_file()]

    def signal_source(self, fs: int) -> SignalSource:
        return SignalSource.wfdb_folder(self.name, self.root, self.record_paths, self.config.fs)

    def annotate(self, source: SignalSource, label_set: str | None) -> Annotations:
        records = np.asarray(source.record_ids, dtype=str)
        if self.table is not None:
            return annotate_user_table(self.table, self.labels_path, self.config, label_set is not None, records)
        annotations = Annotations(
            records,
            random_patient_splits(records, self.config),
            split_source=str(self.root),
            empty_is_negative=self.config.empty_labels == "negative",
        )
        if label_set is None:
            return annotations
        labels: list[list[str] | None] = []
        for i, codes in enumerate(read_dx_lines(self.root, self.record_paths)):
            if not codes and self.config.empty_labels == "exclude":
                codes = "empty '# Dx:' line (set empty_labels=negative to use it as a negative)"
            if isinstance(codes, str):
                annotations.problems[i] = codes
                codes = None
            labels.append(codes)
        if all(tokens is None for tokens in labels):
            raise DataError(
                f"{self.name}: {self.root} has no labels (no labels.csv and no '# Dx:' header lines); "
                f"{FIX}. Unlabelled records can still pretrain: --pretrain-data {self.name}:{self.root}"
            )
        annotations.labels = labels
        return annotations
