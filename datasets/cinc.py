"""The PhysioNet/CinC Challenge 2020-21 training data (Perez Alday et al., Physiol. Meas.
41:124003, 2020; Reyna et al., CinC 48, 2021): 12-lead records from CPSC 2018, CPSC-extra,
St Petersburg, PTB, PTB-XL, Georgia, Chapman-Shaoxing and Ningbo, in one layout.

Reads a Challenge folder as distributed (every ``*.hea`` below ``--root``, signals in the
``.mat`` beside it, labels the ``# Dx:`` line), like ``wfdb-folder`` (it shares its record
listing and ``# Dx:`` parsing), but maps the labels with the Challenge's own tables
(benchmark/data/challenge.py: SNOMED CT names, the equivalent-code pairs, the early CPSC headers'
class names); codes the tables do not know are reported per record. Records of any rate and
length: the first ``preprocess.duration_s`` (default 10) seconds, resampled.

The Challenge has no patient ids (age and sex only): each record is its own patient, split at
random (seeded). Records of the Challenge may be the same recordings as records of other
datasets (its ``HR*`` records are PTB-XL records, ``S*`` are PTB records): the content guard of
the runner (benchmark/data/duplicates.py) finds them, patient ids cannot.

Label sets:

- ``scored``: the 26 classes the 2021 Challenge scored (30 codes, four pairs merged); a record
  with none of them is an all-negative row, as in the Challenge's scoring;
- ``all``: every code of the tables (equivalents merged) with ``min_count`` training positives;
- ``common``: the diagnoses shared with PTB-XL and LUDB (benchmark/data/common_labels.py),
  counted in every split; a record with none of them is an all-negative row.

In every label set a label the record's source database never annotates is unknown for the
record, not negative (``ECGArrays.label_sources``): the sources use different vocabularies (CPSC
2018 names 9 classes, so of the common labels its records can give AF, IAVB, RBBB, LBBB, PAC and
PVC only). The source follows from the record's name and what each source annotates from the
Challenge tables' per-source counts (benchmark/data/challenge.py); ``prepare`` prints both.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import ClassVar

import numpy as np

from ecgbench import DATASETS, DatasetConfig
from ecgbench.data import (
    LABELLED_SPLITS,
    TABLE_FILES,
    Annotations,
    ChallengeTables,
    PreparedDataset,
    RandomSplitConfig,
    SignalSource,
    challenge_source,
    common_tokens,
    header_records,
    order_common,
    random_patient_splits,
    read_dx_lines,
)


@dataclass
class CincConfig(RandomSplitConfig):
    """``root``: the Challenge folder; ``tables_dir``: where the mapping tables are (default: root);
    ``fs``: the records' rate, 0 to accept every header's rate."""

    tables_dir: Path | None = None
    fs: float = 0.0


@DATASETS.register("cinc")
class CinC(PreparedDataset):
    summary = (
        "PhysioNet/CinC Challenge 2020-21 folder (--root PATH): SNOMED CT via the Challenge's tables, random split"
    )
    Config: ClassVar[type[DatasetConfig]] = CincConfig
    label_sets = ("scored", "all", "common")
    patient_namespace = "cinc"
    label_semantics = "per-source vocabularies 1"  # labels a record's source never annotates are unknown

    @property
    def tables_dir(self) -> Path:
        return Path(self.config.tables_dir or self.root).expanduser().resolve()

    @cached_property
    def tables(self) -> ChallengeTables:
        return ChallengeTables.read(self.tables_dir)

    @cached_property
    def record_paths(self) -> list[str]:
        return header_records(self.name, self.root, "point --root at a Challenge training folder")

    def label_files(self):
        """The tables (when present: pretraining needs none) and every header (its ``# Dx:`` line)."""
        tables = [self.tables_dir / name for name in TABLE_FILES if (self.tables_dir / name).is_file()]
        return [*tables, *(self.root / f"{path}.hea" for path in self.record_paths)]

    def signal_source(self, fs: int) -> SignalSource:
        sources = [challenge_source(path) or "other" for path in self.record_paths]
        return SignalSource.wfdb_folder(self.name, self.root, self.record_paths, self.config.fs, sources)

    def annotate(self, source: SignalSource, label_set: str | None) -> Annotations:
        records = np.asarray(source.record_ids, dtype=str)
        annotations = Annotations(records, random_patient_splits(records, self.config), split_source=str(self.root))
        if label_set is None:
            return annotations
        scored = set(self.tables.scored)
        labels: list[list[str] | None] = []
        for i, (path, tokens) in enumerate(zip(self.record_paths, read_dx_lines(self.root, self.record_paths))):
            header = self.root / f"{path}.hea"
            if isinstance(tokens, str):
                annotations.problems[i] = tokens
                labels.append(None)
                continue
            if not tokens:
                annotations.problems[i] = f"empty '# Dx:' line in {header}: the record's diagnoses are unknown"
                labels.append(None)
                continue
            codes, unknown = self.tables.map_tokens(tokens)
            if unknown:
                annotations.notes.append(
                    (
                        i,
                        "label dropped",
                        f"{', '.join(unknown)} in {header.name}: in none of the Challenge's mapping tables "
                        f"({', '.join(p.name for p in self.tables.files)}); ignored",
                    )
                )
            if label_set == "scored":
                codes = [code for code in codes if code in scored]
            elif label_set == "common":
                codes = common_tokens("cinc", codes)
            elif not codes:
                annotations.problems[i] = f"no code of {header.name} is in the Challenge's tables"
                labels.append(None)
                continue
            labels.append(codes)
        annotations.labels = labels
        annotations.sources, annotations.source_labels = self.sources(label_set, annotations)
        annotations.empty_is_negative = label_set in ("scored", "common")
        if label_set == "common":  # one label space across sources: counted in every split (datasets/ludb.py)
            annotations.count_splits = LABELLED_SPLITS
        return annotations

    def sources(self, label_set: str, annotations: Annotations) -> tuple[np.ndarray, dict[str, list[str]]]:
        """Each record's source database ("" where its name names none, noted in the report: all
        its labels count as annotated) and the labels of ``label_set`` each source annotates."""
        sources = np.array([challenge_source(path) or "" for path in self.record_paths], dtype=str)
        for i in np.flatnonzero(sources == ""):
            annotations.notes.append(
                (
                    int(i),
                    "label source unknown",
                    f"{self.record_paths[i]}: the name matches no Challenge source (A, Q, I, S, HR, E, JS); "
                    "every label is counted as annotated",
                )
            )
        vocabulary = {}
        for source, codes in self.tables.annotated.items():
            if label_set == "common":
                vocabulary[source] = common_tokens("cinc", sorted(codes))
            elif label_set == "scored":
                vocabulary[source] = [code for code in self.tables.scored if code in codes]
            else:
                vocabulary[source] = sorted(codes)
        return sources, vocabulary

    def describe_labels(self, names, label_set):
        if label_set == "common":
            return order_common(names)
        if label_set == "scored":
            ordered = [code for code in self.tables.scored if code in set(names)]
        else:
            ordered = sorted(names, key=lambda code: self.tables.names[code])
        return ordered, {code: self.tables.names[code] for code in ordered}, {}
