"""MIMIC-IV-ECG v1.0 waveforms with MIMIC-IV-ECG-Ext-ICD labels (the LAMAE paper's data).

Waveforms (Gow et al. 2023): ``record_list.csv`` + ``files/pNNNN/pSUBJECT/sSTUDY/STUDY.{hea,dat}``,
about 800k 10-s 12-lead ECGs at 500 Hz of 160k patients. The headers order the leads I, II,
III, aVR, aVF, aVL, V1-V6; benchmark/data/cache.py maps them by name and repairs or masks NaN
samples and flat leads.

Labels (Strodthoff et al. 2024, ``records_w_diag_icd10.csv``, a separate credentialed PhysioNet
project; ``labels_csv`` points at it, default: the root): ``label_column`` (default
``all_diag_all``: hospital discharge diagnoses if any, else ED diagnoses) holds ICD-10-CM codes
without dots as a list literal (``ast.literal_eval``). Each code is truncated to ``icd_digits``
characters (4: subcategory), checked against ICD-10-CM and expanded with its ancestors by
benchmark/data/icd.py (simple-icd-10-cm), named as in the LAMAE paper's tables: chapter ``IX``,
block ``IX.I05-I09``, category ``I07``, subcategory ``I071``. Label sets: ``chapter-ix`` (the
paper's: diseases of the circulatory system, I00-I99) and ``all`` (every chapter). A label is
kept with ``min_count`` positives in train (default 10, our choice: the paper reports 228
Chapter IX codes without stating its threshold). An ECG whose list holds no code of the set is
a negative; an empty list ``[]`` (no diagnosis at all) is excluded unless
``empty_labels=negative``; ``first_ecg_per_stay`` keeps the first ECG of each stay only.

Splits from ``split_column``: ``fold`` (the published split) or ``strat_fold`` (0-19, patient-
grouped); with m the largest value, test = m, validation = m - 1, train below. Records of
patients without a labelled record pretrain (they are in no evaluation split); without the
labels file (waveforms only) every record can serve as ``--pretrain-data``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

from ecgbench import DATASETS, DatasetConfig
from ecgbench.data import (
    Annotations,
    FileDatasetConfig,
    PreparedDataset,
    SignalSource,
    WfdbReader,
    icd_description,
    icd_label_names,
    icd_tree,
    is_valid_code,
    parse_list_cell,
    read_csv,
)

log = logging.getLogger("benchmark")

RECORD_FIX = "point --root at a MIMIC-IV-ECG v1.0 folder (physionet.org/content/mimic-iv-ecg/1.0)"
LABEL_FIX = (
    "set --set mimic-iv-ecg.labels_csv=PATH to MIMIC-IV-ECG-Ext-ICD's records_w_diag_icd10.csv "
    "(physionet.org/content/mimic-iv-ecg-ext-icd-labels)"
)
LABEL_COLUMNS = ("ed_diag_ed", "ed_diag_hosp", "hosp_diag_hosp", "all_diag_hosp", "all_diag_all")


@dataclass
class MimicConfig(FileDatasetConfig):
    labels_csv: Path | None = None  # default: records_w_diag_icd10.csv in the root
    label_column: str = "all_diag_all"
    split_column: str = "fold"  # fold | strat_fold
    icd_digits: int = 4  # codes are truncated to this many characters before adding ancestors
    min_count: int = 10  # positives in train
    empty_labels: str = "exclude"  # an empty diagnosis list: exclude | negative
    first_ecg_per_stay: bool = False  # only ECGs with ecg_no_within_stay == 0 in the labelled splits

    def __post_init__(self):
        super().__post_init__()
        if self.label_column not in LABEL_COLUMNS:
            raise ValueError(f"label_column must be one of {', '.join(LABEL_COLUMNS)}, got {self.label_column!r}")
        if self.split_column not in ("fold", "strat_fold"):
            raise ValueError(f"split_column must be fold or strat_fold, got {self.split_column!r}")
        if not 3 <= self.icd_digits <= 7:
            raise ValueError(f"icd_digits must be in 3..7, got {self.icd_digits}")
        if self.empty_labels not in ("exclude", "negative"):
            raise ValueError(f"empty_labels must be 'exclude' or 'negative', got {self.empty_labels!r}")


@DATASETS.register("mimic-iv-ecg")
class MimicIVECG(PreparedDataset):
    summary = "MIMIC-IV-ECG + Ext-ICD (--root PATH): ICD-10-CM hierarchy labels, fold/strat_fold splits"
    Config: ClassVar[type[DatasetConfig]] = MimicConfig
    label_sets = ("chapter-ix", "all")
    patient_namespace = "mimic-iv"  # subject_id is MIMIC-IV's patient id in every module

    @property
    def labels_path(self) -> Path:
        return Path(self.config.labels_csv) if self.config.labels_csv else self.root / "records_w_diag_icd10.csv"

    @cached_property
    def records(self) -> pd.DataFrame:
        return read_csv(
            self.root / "record_list.csv",
            ("subject_id", "study_id", "path"),
            RECORD_FIX,
            dtype={"subject_id": str, "study_id": str, "path": str},
        )

    def label_files(self):
        return [path for path in (self.root / "record_list.csv", self.labels_path) if path.is_file()]

    def signal_source(self, fs: int) -> SignalSource:
        records = self.records
        return SignalSource(
            self.name,
            records["study_id"].str.strip().to_numpy(dtype=str),
            WfdbReader(str(self.root), records["path"].fillna("").str.strip().tolist(), 500.0),
            10.0,
        )

    def annotate(self, source: SignalSource, label_set: str | None) -> Annotations:
        cfg = self.config
        patients = self.records["subject_id"].fillna("").str.strip().to_numpy(dtype=str)
        if label_set is None and not self.labels_path.is_file():  # waveforms only: every ECG may pretrain
            log.info("%s not found: all MIMIC-IV-ECG records are pretraining data", self.labels_path)
            return Annotations(patients, np.full(len(patients), ""), split_source=str(self.root / "record_list.csv"))
        required = ["file_name", cfg.split_column]
        if label_set is not None:
            required += [cfg.label_column] + (["ecg_no_within_stay"] if cfg.first_ecg_per_stay else [])
        table = read_csv(self.labels_path, required, LABEL_FIX, usecols=lambda c: c in required, dtype=str)
        row_of = pd.Series(np.arange(len(self.records)), index=self.records["path"].str.strip())
        row = table["file_name"].str.strip().map(row_of)
        unknown = row.isna()
        if unknown.any():
            log.warning(
                "%s: %d rows name records absent from record_list.csv and are ignored (e.g. %s)",
                self.labels_path,
                int(unknown.sum()),
                table["file_name"][unknown].iloc[0],
            )
        table, row = table[~unknown], row[~unknown].astype(np.int64).to_numpy()
        repeated = pd.Series(row).duplicated(keep=False).to_numpy()

        fold = pd.to_numeric(table[cfg.split_column], errors="coerce").to_numpy()
        last = np.nanmax(fold) if np.isfinite(fold).any() else np.nan
        split_of_row = np.where(
            fold == last, "test", np.where(fold == last - 1, "val", np.where(fold < last - 1, "train", ""))
        )
        splits = np.full(len(patients), "", dtype=object)
        splits[row[~repeated]] = split_of_row[~repeated]
        annotations = Annotations(
            patients,
            splits.astype(str),
            empty_is_negative=True,  # no code of the set: negative
            split_source=str(self.labels_path),
        )
        if label_set is None:
            return annotations

        labels: list[list[str] | None] = [None] * len(patients)
        problems = {i: f"no row in {self.labels_path.name}" for i in range(len(patients))}
        for i in np.unique(row[repeated]):
            problems[int(i)] = f"listed more than once in {self.labels_path.name}: labels ambiguous"
        if cfg.first_ecg_per_stay:
            annotations.selected = np.zeros(len(patients), dtype=bool)
            annotations.selected[row] = pd.to_numeric(table["ecg_no_within_stay"], errors="coerce").to_numpy() == 0
        names_of = _CodeLabels(cfg.icd_digits, chapter="IX" if label_set == "chapter-ix" else None)
        for i, cell, once in zip(row, table[cfg.label_column], ~repeated):
            if not once:
                continue
            try:
                codes = parse_list_cell(cell)
            except ValueError as exc:
                problems[int(i)] = f"{cfg.label_column}: {exc}"
                continue
            if not codes and cfg.empty_labels == "exclude":
                problems[int(i)] = (
                    f"{cfg.label_column} is an empty list (set empty_labels=negative to use it as a negative)"
                )
                continue
            del problems[int(i)]
            tokens: set[str] = set()
            for code in codes:
                names = names_of(code)
                if names is None:
                    annotations.notes.append((int(i), "code ignored", f"{code!r} is not an ICD-10-CM code"))
                else:
                    tokens.update(names)
            labels[i] = sorted(tokens)
        annotations.labels, annotations.problems = labels, problems
        return annotations

    def describe_labels(self, names, label_set):
        ordered, parents = icd_tree(names)
        return ordered, {name: icd_description(name) for name in ordered}, parents


class _CodeLabels:
    """ICD-10-CM code as written in MIMIC -> its label names (truncated code and ancestors),
    restricted to one chapter; None for a code that is not ICD-10-CM. Memoised: 800k ECGs share
    a few thousand distinct codes."""

    def __init__(self, digits: int, chapter: str | None):
        self.digits, self.chapter, self.cache = digits, chapter, {}

    def __call__(self, code: str) -> tuple[str, ...] | None:
        if code not in self.cache:
            short = code.strip().upper().replace(".", "")[: self.digits]
            names = icd_label_names(short) if is_valid_code(short) else None
            self.cache[code] = names if names is None or self.chapter in (None, names[-1]) else ()
        return self.cache[code]
