"""PTB-XL v1.0.3 (Wagner et al. 2020): 21,799 10-s 12-lead ECGs of 18,869 patients.

Reads an unmodified PTB-XL folder (``ptbxl_database.csv``, ``scp_statements.csv``,
``records100/``, ``records500/``). The source follows the requested rate: records100 (100 Hz)
for fs <= 100, records500 (500 Hz) above it, resampled by benchmark/data/cache.py.

Label sets, label space and splits as in the PTB-XL benchmark of Strodthoff et al. 2021 ("Deep
learning for ECG analysis: benchmarks and insights from PTB-XL", IEEE JBHI 25:1519; their
``compute_label_aggregations`` and ``select_data``):

- ``all``: every statement of ``scp_codes`` (likelihoods ignored; 71 in the full release);
  ``diagnostic`` (44), ``form`` (19), ``rhythm`` (12): statements with that flag in
  ``scp_statements.csv``; ``subdiagnostic`` (23) and ``superdiagnostic`` (5): the diagnostic
  statements mapped to their ``diagnostic_subclass`` / ``diagnostic_class``;
- ``common``: the diagnoses shared with LUDB and CinC (benchmark/data/common_labels.py); a
  record without any of them is an all-negative row;
- the label space is every label occurring at least ``min_count`` (default 1) times in the
  labelled records of all folds; a record without any label of the set leaves the labelled
  splits (it still pretrains);
- ``strat_fold`` 1-8 train, 9 validation, 10 test (the folds are patient-disjoint); pretraining
  uses every record of folds 1-8.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

import numpy as np
import pandas as pd

from ecgbench import DATASETS, DatasetConfig
from ecgbench.data import (
    LABELLED_SPLITS,
    Annotations,
    FileDatasetConfig,
    PreparedDataset,
    SignalSource,
    WfdbReader,
    common_tokens,
    order_common,
    read_csv,
)

FIX = "point --root at an unmodified PTB-XL v1.0.3 folder (physionet.org/content/ptb-xl/1.0.3)"
DATABASE_COLUMNS = ("ecg_id", "patient_id", "scp_codes", "strat_fold", "filename_lr", "filename_hr")
STATEMENT_COLUMNS = ("description", "diagnostic", "form", "rhythm", "diagnostic_class", "diagnostic_subclass")
FOLD_SPLITS = {**{fold: "train" for fold in range(1, 9)}, 9: "val", 10: "test"}
SUPERCLASSES = {
    "NORM": "normal ECG",
    "MI": "myocardial infarction",
    "STTC": "ST/T change",
    "CD": "conduction disturbance",
    "HYP": "hypertrophy",
}  # Wagner et al. 2020, table 2


@dataclass
class PtbxlConfig(FileDatasetConfig):
    """``root``: the PTB-XL folder; the rest as for every file dataset."""


@DATASETS.register("ptbxl")
class PTBXL(PreparedDataset):
    summary = "PTB-XL v1.0.3 (--root PATH): SCP-ECG statements, folds 1-8/9/10 (Strodthoff et al. 2021)"
    Config: ClassVar[type[DatasetConfig]] = PtbxlConfig
    label_sets = ("all", "diagnostic", "subdiagnostic", "superdiagnostic", "form", "rhythm", "common")
    patient_namespace = "ptbxl"

    @cached_property
    def database(self) -> pd.DataFrame:
        return read_csv(
            self.root / "ptbxl_database.csv",
            DATABASE_COLUMNS,
            FIX,
            dtype={"scp_codes": str, "filename_lr": str, "filename_hr": str},
        )

    @cached_property
    def statements(self) -> pd.DataFrame:
        return read_csv(self.root / "scp_statements.csv", STATEMENT_COLUMNS, FIX, index_col=0)

    def label_files(self):
        return [self.root / "ptbxl_database.csv", self.root / "scp_statements.csv"]

    def signal_source(self, fs: int) -> SignalSource:
        column, declared_fs = ("filename_lr", 100.0) if fs <= 100 else ("filename_hr", 500.0)
        return SignalSource(
            self.name,
            self.database["ecg_id"].astype(str).to_numpy(),
            WfdbReader(str(self.root), self.database[column].fillna("").tolist(), declared_fs),
            10.0,
        )

    def annotate(self, source: SignalSource, label_set: str | None) -> Annotations:
        db = self.database
        patient = pd.to_numeric(db["patient_id"], errors="coerce")
        patients = np.array([f"{int(p)}" if np.isfinite(p) else "" for p in patient], dtype=str)
        folds = pd.to_numeric(db["strat_fold"], errors="coerce")
        splits = folds.map(FOLD_SPLITS).fillna("").to_numpy(dtype=str)
        notes = [
            (int(i), "no split", f"strat_fold {db['strat_fold'].iloc[i]!r} is not 1-10: pretraining only")
            for i in np.flatnonzero(splits == "")
        ]
        annotations = Annotations(
            patients,
            splits,
            notes=notes,
            count_splits=LABELLED_SPLITS,
            split_source=str(self.root / "ptbxl_database.csv"),
        )
        if label_set is None:
            return annotations
        tokens_of = self._aggregation(label_set)
        labels: list[list[str] | None] = []
        for i, cell in enumerate(db["scp_codes"]):
            try:
                codes = ast.literal_eval(cell)
                if not isinstance(codes, dict):
                    raise ValueError
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                annotations.problems[i] = f"unparsable scp_codes cell {str(cell)[:80]!r} (expected a dict literal)"
                labels.append(None)
                continue
            if not codes:
                annotations.problems[i] = "empty scp_codes: the record has no statement"
                labels.append(None)
                continue
            labels.append(sorted({token for code in codes for token in tokens_of(str(code))}))
        annotations.labels = labels
        annotations.empty_is_negative = label_set == "common"
        return annotations

    def _aggregation(self, label_set: str):
        """code -> the label tokens it contributes to ``label_set``."""
        if label_set == "all":
            return lambda code: [code]
        if label_set == "common":
            return lambda code: common_tokens("ptbxl", [code])
        statements = self.statements
        flag = "diagnostic" if label_set in ("diagnostic", "subdiagnostic", "superdiagnostic") else label_set
        chosen = statements[statements[flag] == 1.0]
        column = {"subdiagnostic": "diagnostic_subclass", "superdiagnostic": "diagnostic_class"}.get(label_set)
        mapping = {
            code: ([code] if column is None else [row[column]] if isinstance(row[column], str) else [])
            for code, row in chosen.iterrows()
        }
        return lambda code: mapping.get(code, [])

    def describe_labels(self, names, label_set):
        if label_set == "common":
            return order_common(names)
        if label_set == "superdiagnostic":
            descriptions = {n: SUPERCLASSES.get(n, n) for n in names}
        elif label_set == "subdiagnostic":
            diagnostic = self.statements[self.statements["diagnostic"] == 1.0]
            descriptions = {
                n: "diagnostic subclass of " + ", ".join(diagnostic.index[diagnostic.diagnostic_subclass == n])
                for n in names
            }
        else:
            descriptions = {n: str(self.statements["description"].get(n, n)) for n in names}
        return sorted(names), descriptions, {}
