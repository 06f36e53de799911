"""Datasets read from files: record index -> prepared signal cache -> labelled views.

A file-based dataset plugin subclasses :class:`PreparedDataset` and implements
``signal_source(fs)`` (which records, read how; :mod:`benchmark.data.cache` prepares them),
``label_files()`` and ``annotate(source, label_set)`` (per record: patient, split, label tokens,
from its CSVs or headers). This module holds the rules they share, so every dataset obeys them:

- **Splits are per patient.** A patient's split is the one its records' metadata gives; a
  patient listed in two splits is refused (folds must be patient-disjoint). Train, val and test
  hold labelled records only; ``pretrain`` holds every usable record of the train patients and
  of patients in no labelled split — never a val or test patient.
- **Label space**: the tokens with at least ``min_count`` positives among the counted records
  (train; every split where the dataset's own benchmark does so, as PTB-XL's), ordered and
  described by the plugin (ICD tree order for MIMIC-IV-ECG).
- **Unknown is not negative**: where a dataset pools sources that annotate different labels
  (``Annotations.sources``), a label a record's source never annotates is unknown for it
  (``ECGArrays.label_sources``), and the view's ``view.json`` and the ``prepare`` command say
  which labels each source can give.
- **Bad labels exclude, never guess**: an unparsable label cell, an empty label list (unless
  the dataset defines it as a valid all-negative row) or an unknown patient take the record out
  of the labelled splits and into the view's ``report.csv`` with the reason.
- **Views**: a small folder in the signal cache, ``views/<label set>-<key>/`` (labels, patient
  ids, splits, meta.json naming the cache as ``arrays_dir``), so ``ECGArrays.load(view)`` works
  and every label set shares one copy of the signals. The key covers the dataset config, the
  cache and the SHA-256 of the label source files: an edited label CSV makes a new view, never a
  stale one.
- **Identity by content**: the arrays' ``fingerprint`` (what results are identified by) is the
  signature of the signal cache's key (source content, preparation parameters and code version),
  the SHA-256 of the label files and the config *without its paths*: fields typed ``Path``
  (``root``, ``labels_csv``) say where data sits, and what they point to is covered by the
  signal source or by ``label_files()``, which must list every other file a plugin reads.
"""

from __future__ import annotations

import ast
import json
import logging
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
from filelock import FileLock

from benchmark.config import signature, to_jsonable
from benchmark.data.cache import REPORT_COLUMNS, default_workers, prepare_signals
from benchmark.data.conditioning import Preprocessing
from benchmark.data.content import Hasher
from benchmark.data.contract import (
    SPLITS,
    DataError,
    DatasetConfig,
    DatasetPlugin,
    ECGArrays,
    LeakageError,
    content_config,
)
from benchmark.data.readers import SignalSource
from benchmark.storage import read_json

log = logging.getLogger("benchmark")


LABELLED_SPLITS: tuple[str, ...] = ("train", "val", "test")


@dataclass
class FileDatasetConfig(DatasetConfig):
    """Settings every file-based dataset has (``--root`` sets ``root``)."""

    root: Path | None = None
    preprocess: Preprocessing = field(default_factory=Preprocessing)
    min_count: int = 1  # a label needs this many positives among the counted records
    max_excluded_fraction: float = 0.05  # more unusable records than this stops the run

    def __post_init__(self):
        if self.min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {self.min_count}")
        if not 0.0 <= self.max_excluded_fraction <= 1.0:
            raise ValueError(f"max_excluded_fraction must be in [0, 1], got {self.max_excluded_fraction}")


@dataclass
class Annotations:
    """What a dataset's metadata says about each record, in cache row order."""

    patient_ids: np.ndarray  # (N,) str; "" = unknown (the record is used nowhere)
    splits: np.ndarray  # (N,) str: train | val | test | "" (in no labelled split)
    labels: list[list[str] | None] | None = None  # tokens per record (None: see problems); None: unlabelled
    problems: dict[int, str] = field(default_factory=dict)  # row -> why its labels cannot be used
    notes: list[tuple[int, str, str]] = field(default_factory=list)  # (row, action, detail), record kept
    selected: np.ndarray | None = None  # (N,) bool filter for the labelled splits (a choice, not reported)
    empty_is_negative: bool = False  # no label of the space = a negative row (else: excluded)
    count_splits: tuple[str, ...] = ("train",)  # where the min_count positives are counted
    split_source: str = ""  # the file the splits came from, for error messages
    #: (N,) str: the source that annotated each record, where sources annotate different labels
    #: (ECGArrays.label_sources); None: one vocabulary for every record
    sources: np.ndarray | None = None
    source_labels: dict[str, list[str]] = field(default_factory=dict)  # source -> the tokens it annotates


def read_csv(path: Path, required: Iterable[str], fix: str, **kwargs) -> pd.DataFrame:
    """A CSV with the ``required`` columns, or a DataError naming the file and the fix."""
    if not path.is_file():
        raise DataError(f"{path} not found; {fix}")
    try:
        table = pd.read_csv(path, **kwargs)
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{path} cannot be read as CSV ({exc}); {fix}") from None
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise DataError(
            f"{path} lacks the required column(s) {', '.join(missing)} "
            f"(it has {', '.join(map(str, table.columns[:12]))}{', ...' if len(table.columns) > 12 else ''}); {fix}"
        )
    return table


def parse_list_cell(cell: object, separator: str | None = None) -> list[str]:
    """A label-list cell: a Python list literal (``"['I10', 'E785']"``, parsed with
    ``ast.literal_eval``, never ``eval``) or, given ``separator``, ``"I10;E785"``.
    ValueError (with the reason) when it is missing or unparsable."""
    if not isinstance(cell, str) or not cell.strip():
        raise ValueError("missing label cell")
    text = cell.strip()
    if separator is not None and not text.startswith("["):
        return [token.strip() for token in text.split(separator) if token.strip()]
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise ValueError(f"unparsable label cell {cell[:80]!r} (expected a list literal such as ['A', 'B'])") from None
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, (str, int)) for v in value):
        raise ValueError(f"label cell {cell[:80]!r} is not a list of codes")
    return [str(v).strip() for v in value]


def coverage_lines(arrays: ECGArrays) -> list[str]:
    """One line per source: which labels of the view it can give (its other labels are unknown
    for its records, not negative); none where every record knows every label."""
    return [
        f"{source} ({part['records']} records) gives {', '.join(part['labels']) or 'none'}"
        + (f"; unknown for its records: {', '.join(part['unknown'])}" if part["unknown"] else "")
        for source, part in arrays.label_coverage().items()
    ]


def consolidate_splits(patients: np.ndarray, splits: np.ndarray, source: str) -> np.ndarray:
    """Each record gets its patient's split; a patient in two splits is refused."""
    table = pd.DataFrame({"patient": patients, "split": splits})
    known = table[(table.patient != "") & (table.split != "")]
    per_patient = known.groupby("patient")["split"].unique()
    conflicts = per_patient[per_patient.map(len) > 1]
    if len(conflicts):
        example = conflicts.index[0]
        raise LeakageError(
            f"{source}: {len(conflicts)} patient(s) have records in more than one split (e.g. patient "
            f"{example}: {', '.join(sorted(conflicts.iloc[0]))}); each patient must be in one split"
        )
    return table.patient.map(per_patient.map(lambda s: s[0])).astype(object).fillna("").to_numpy(dtype=str)


def read_manifest(cache: Path) -> dict:
    """A prepared signal cache's manifest.json."""
    return read_json(cache / "manifest.json", f"delete the folder {cache} to prepare the dataset again")


class PreparedDataset(DatasetPlugin):
    """Base of dataset plugins read from files (see the module docstring)."""

    Config: ClassVar[type[DatasetConfig]] = FileDatasetConfig
    #: the version of how a plugin turns its label files into labels, where a change the files'
    #: hashes cannot see alters labelled views (per-source label masks); part of the labelled views'
    #: fingerprint when set, never of the unlabelled (pretraining) view's
    label_semantics: ClassVar[str] = ""
    config: FileDatasetConfig  # an instance of Config (a subclass's own, which extends this one)
    workers: int | None = (
        None  # preparation processes (None: all available cores); not config, results do not depend on it
    )

    # -- what a plugin implements ---------------------------------------------------------------
    def signal_source(self, fs: int) -> SignalSource:
        raise NotImplementedError

    def label_files(self) -> list[Path]:
        """The files that annotations come from (their SHA-256 keys the views)."""
        raise NotImplementedError

    def annotate(self, source: SignalSource, label_set: str | None) -> Annotations:
        """Patients, splits and (unless ``label_set`` is None) label tokens of ``source``'s records."""
        raise NotImplementedError

    def describe_labels(
        self, names: list[str], label_set: str
    ) -> tuple[list[str], dict[str, str], dict[str, list[str]]]:
        """Label order, descriptions and parents (ECGArrays.label_parents); default: sorted."""
        return sorted(names), {}, {}

    # -- shared ---------------------------------------------------------------------------------
    @property
    def root(self) -> Path:
        if self.config.root is None:
            raise DataError(
                f"dataset {self.name!r} is read from files: give its folder with --root PATH "
                f"(or --set {self.name}.root=PATH)"
            )
        root = Path(self.config.root).expanduser().resolve()
        if not root.is_dir():
            raise DataError(f"{self.name}: root {root} is not a folder; pass the dataset's folder with --root")
        return root

    def prepare(
        self, fs: int, cache_root: Path, progress: bool = True, hasher: Hasher | None = None
    ) -> tuple[SignalSource, Path]:
        """Prepared signals at ``fs`` Hz (built, finished after a crash, or reused)."""
        source = self.signal_source(fs)
        return source, prepare_signals(source, fs, self.config.preprocess, cache_root, self.workers, progress, hasher)

    def load(self, fs: int, label_set: str, cache_root: Path, progress: bool = True) -> ECGArrays:
        self.check_label_set(label_set)
        return self._view(fs, label_set, cache_root, progress)

    def load_pretraining(self, fs: int, cache_root: Path, progress: bool = True) -> ECGArrays:
        return self._view(fs, None, cache_root, progress)

    def _view(self, fs: int, label_set: str | None, cache_root: Path, progress: bool) -> ECGArrays:
        hasher = Hasher.in_cache(cache_root, self.workers or default_workers(), progress)
        source, cache = self.prepare(fs, cache_root, progress, hasher)
        self._check_exclusions(cache)
        identity = {
            "cache": cache.name,
            "config": content_config(self.config),
            "label_files": hasher.file_digests(self.label_files()),
        }
        if label_set is not None and self.label_semantics:
            identity["label_semantics"] = self.label_semantics
        fingerprint = signature(identity)
        directory = cache / "views" / f"{label_set or 'unlabelled'}-{signature([fingerprint, label_set])}"
        if not (directory / "meta.json").is_file():
            directory.parent.mkdir(exist_ok=True)
            with FileLock(f"{directory}.lock"):
                if not (directory / "meta.json").is_file():
                    self._build_view(directory, cache, source, label_set, fingerprint)
        arrays = ECGArrays.load(directory)
        arrays.fingerprint = fingerprint
        return arrays

    def _check_exclusions(self, cache: Path) -> None:
        manifest = read_manifest(cache)
        if manifest["excluded"] <= self.config.max_excluded_fraction * manifest["n_records"]:
            return
        report = pd.read_csv(cache / "report.csv")
        examples = report.loc[report.action == "excluded", "detail"].head(3).tolist()
        raise DataError(
            f"{self.name}: {manifest['excluded']} of {manifest['n_records']} records could not be used, more than "
            f"max_excluded_fraction={self.config.max_excluded_fraction:g} allows (e.g. {'; '.join(examples)}). "
            f"Every record and reason is in {cache / 'report.csv'}. Fix the files, or accept the loss with "
            f"--set {self.name}.max_excluded_fraction={min(1.0, manifest['excluded'] / manifest['n_records'] + 0.01):.2f}"
        )

    def _build_view(
        self, directory: Path, cache: Path, source: SignalSource, label_set: str | None, fingerprint: str
    ) -> None:
        ann = self.annotate(source, label_set)
        record_ids = source.record_ids
        usable = np.load(cache / "lead_mask.npy").any(axis=1)
        split = consolidate_splits(ann.patient_ids, ann.splits, ann.split_source or self.name)
        known = ann.patient_ids != ""
        report = [
            (record_ids[i], "labels", "excluded", "unknown patient id: the record is used nowhere", 0)
            for i in np.flatnonzero(~known & usable)
        ]
        candidates = usable & known & (split != "")
        labels, names, descriptions, parents, labelled, notes = self._label_matrix(ann, split, candidates, label_set)
        report += [(record_ids[i], "labels", action, detail, 0) for i, action, detail in notes]
        splits = {s: np.flatnonzero(labelled & (split == s)) for s in LABELLED_SPLITS}
        splits["pretrain"] = np.flatnonzero(usable & known & np.isin(split, ("train", "")))
        arrays = ECGArrays(  # validates shapes and refuses leakage before anything is written
            name=self.name,
            fs=read_manifest(cache)["fs"],
            signals=np.load(cache / "signals.npy", mmap_mode="r"),
            lead_mask=np.load(cache / "lead_mask.npy"),
            labels=labels,
            label_names=names,
            patient_ids=ann.patient_ids.astype(str),
            record_ids=record_ids,
            splits=splits,
            label_descriptions=descriptions,
            label_parents=parents,
            record_fingerprints=np.load(cache / "record_fingerprints.npy"),
            label_sources=None if ann.sources is None or label_set is None else ann.sources.astype(str),
            source_labels=ann.source_labels if ann.sources is not None and label_set is not None else {},
        )
        self._write_view(directory, cache, arrays, report, label_set, fingerprint)

    def _label_matrix(self, ann: Annotations, split: np.ndarray, candidates: np.ndarray, label_set: str | None):
        """(labels, names, descriptions, parents, rows in the labelled splits, report notes)."""
        n = len(split)
        if ann.labels is None:
            return np.zeros((n, 0), dtype=np.uint8), [], {}, {}, np.zeros(n, dtype=bool), []
        if label_set is None:
            raise RuntimeError(
                f"{type(self).__name__}.annotate returned labels for the unlabelled view (label_set None); "
                "return Annotations(labels=None) there"
            )
        token_lists = ann.labels  # a list for every labelled row (None rows are never labelled)
        notes = [(i, "excluded from labelled splits", reason) for i, reason in sorted(ann.problems.items())]
        notes += ann.notes
        labelled = candidates & np.array([tokens is not None for tokens in ann.labels])
        if ann.selected is not None:
            labelled &= ann.selected
        counted = labelled & np.isin(split, ann.count_splits)
        counts = Counter(t for i in np.flatnonzero(counted) for t in set(token_lists[i] or ()))
        names, descriptions, parents = self.describe_labels(
            [t for t, c in counts.items() if c >= self.config.min_count], label_set
        )
        if not counted.any():
            reasons = Counter(reason for _, reason in sorted(ann.problems.items()))
            example = "; ".join(f"{reason} ({k} records)" for reason, k in reasons.most_common(2))
            raise DataError(
                f"{self.name}: no record of {'/'.join(ann.count_splits)} has usable labels of set {label_set!r}"
                + (f": {example}" if example else "; check the label files and the splits")
            )
        if not names:
            raise DataError(
                f"{self.name}: no label of set {label_set!r} has {self.config.min_count} positive(s) "
                f"in {'/'.join(ann.count_splits)}; lower --set {self.name}.min_count or check the labels"
            )
        column = {name: j for j, name in enumerate(names)}
        labels = np.zeros((n, len(names)), dtype=np.uint8)
        for i in np.flatnonzero(labelled):  # row by row: no (row, label) pair list for 800k records
            labels[i, [column[t] for t in token_lists[i] or () if t in column]] = 1
        if not ann.empty_is_negative:
            empty = labelled & (labels.sum(axis=1) == 0)
            notes += [
                (int(i), "excluded from labelled splits", f"no label of set {label_set!r} among the {len(names)} kept")
                for i in np.flatnonzero(empty)
            ]
            labelled &= ~empty
        return labels, names, descriptions, parents, labelled, notes

    def _write_view(
        self, directory: Path, cache: Path, arrays: ECGArrays, report: list, label_set: str | None, fingerprint: str
    ) -> None:
        """The view's files, written to a temporary folder and renamed (never half-written)."""
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
        try:
            np.save(tmp / "labels.npy", arrays.labels)
            np.save(tmp / "patient_ids.npy", arrays.patient_ids)
            if arrays.label_sources is not None:
                np.save(tmp / "label_sources.npy", arrays.label_sources)
            np.savez(tmp / "splits.npz", **arrays.splits)  # type: ignore[arg-type]  # numpy stubs: **kwds could name allow_pickle
            meta = {
                "name": arrays.name,
                "fs": arrays.fs,
                "label_names": arrays.label_names,
                "label_descriptions": arrays.label_descriptions,
                "label_parents": arrays.label_parents,
                "source_labels": arrays.source_labels,
                "arrays_dir": os.path.relpath(cache, directory),
            }
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
            pd.DataFrame(report, columns=list(REPORT_COLUMNS)).to_csv(tmp / "report.csv", index=False)
            (tmp / "view.json").write_text(
                json.dumps(
                    to_jsonable(
                        {
                            "dataset": self.name,
                            "label_set": label_set,
                            "fingerprint": fingerprint,
                            "config": self.config,  # as given (with its paths), for the record
                            "label_files": [str(p) for p in self.label_files()],
                            "records": {k: len(v) for k, v in arrays.splits.items()},
                            "labels": len(arrays.label_names),
                            "report_rows": len(report),
                            "label_sources": arrays.label_coverage(),
                        }
                    ),
                    indent=1,
                )
            )
            os.replace(tmp, directory)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        summary = ", ".join(f"{k} {len(arrays.splits[k])}" for k in SPLITS)
        for line in coverage_lines(arrays):
            log.info("%s %s: %s", self.name, label_set, line)
        log.info(
            "%s %s: %s; %d labels%s",
            self.name,
            label_set or "(unlabelled)",
            summary,
            len(arrays.label_names),
            f"; {len(report)} label-stage notes in {directory / 'report.csv'}" if report else "",
        )
