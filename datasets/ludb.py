"""LUDB v1.0.1, the Lobachevsky University Electrocardiography Database (Kalyakulina et al.,
IEEE Access 8:186181, 2020): 200 subjects, one 10-s 12-lead record each at 500 Hz.

Reads an unmodified LUDB folder (``ludb.csv`` and ``data/<ID>.hea|.dat``; lead names are
lower-case, matched by name like every source). The record id is the subject id, so every
record is its own patient; patients are split at random (seeded, ``val_fraction`` /
``test_fraction``) because LUDB defines no split.

Labels come from ``ludb.csv``, whose cells hold one diagnosis text per line under a category
column. :data:`TEXT_MAP` maps every text found in v1.0.1 to a named label, explicitly, matched
case-insensitively on the start of the text (the CSV and the headers differ in case: ``I
degree av block`` vs ``I degree AV block``). A text the map does not know is reported, never
guessed. Label sets:

- ``diagnoses``: the named labels below (rhythm, axis, conduction, extrasystoles, hypertrophy,
  pacing, ischaemia, repolarisation); the map is a [choice] that keeps LUDB's own distinctions
  (overload vs hypertrophy, complete vs incomplete blocks) and merges sub-types LUDB gives for
  one finding (every "Ventricular extrasystole, ..." line is ``PVC``, every wall of "Ischemia:
  ..." is ``ISCH``);
- ``common``: the diagnoses shared with PTB-XL and CinC (benchmark/data/common_labels.py),
  counted in every split (as PTB-XL does), so that a source's label space holds every common
  label it has a positive of; a record without any is an all-negative row.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

import numpy as np
import pandas as pd

from ecgbench import DATASETS, DatasetConfig
from ecgbench.data import (
    LABELLED_SPLITS,
    Annotations,
    PreparedDataset,
    RandomSplitConfig,
    SignalSource,
    WfdbReader,
    common_tokens,
    order_common,
    random_patient_splits,
    read_csv,
)

FIX = "point --root at an unmodified LUDB v1.0.1 folder (physionet.org/content/ludb/1.0.1)"
CATEGORIES = (
    "Rhythms",
    "Electric axis of the heart",
    "Conduction abnormalities",
    "Extrasystolies",
    "Hypertrophies",
    "Cardiac pacing",
    "Ischemia",
    "Non-specific repolarization abnormalities",
    "Other states",
)

# (start of the diagnosis text, lower-case) -> (label, description); first match wins
TEXT_MAP: tuple[tuple[str, str, str], ...] = (
    ("sinus rhythm", "NSR", "sinus rhythm"),
    ("sinus bradycardia", "SB", "sinus bradycardia"),
    ("sinus tachycardia", "STach", "sinus tachycardia"),
    ("sinus arrhythmia", "SA", "sinus arrhythmia"),
    ("irregular sinus rhythm", "ISR", "irregular sinus rhythm"),
    ("atrial fibrillation", "AF", "atrial fibrillation"),
    ("atrial flutter", "AFL", "atrial flutter"),
    ("wandering atrial pacemaker", "WAP", "wandering atrial pacemaker"),
    ("aberrant conduction", "ABERR", "aberrant conduction"),
    ("electric axis of the heart: normal", "AXN", "normal electrical axis"),
    ("electric axis of the heart: left axis deviation", "LAD", "left axis deviation"),
    ("electric axis of the heart: right axis deviation", "RAD", "right axis deviation"),
    ("electric axis of the heart: vertical", "AXV", "vertical electrical axis"),
    ("electric axis of the heart: horizontal", "AXH", "horizontal electrical axis"),
    ("i degree av block", "IAVB", "first-degree AV block"),
    ("iii degree av-block", "IIIAVB", "third-degree AV block"),
    ("incomplete right bundle branch block", "IRBBB", "incomplete right bundle branch block"),
    ("complete right bundle branch block", "CRBBB", "complete right bundle branch block"),
    ("incomplete left bundle branch block", "ILBBB", "incomplete left bundle branch block"),
    ("complete left bundle branch block", "CLBBB", "complete left bundle branch block"),
    ("left anterior hemiblock", "LAnFB", "left anterior hemiblock (fascicular block)"),
    ("non-specific intravintricular conduction delay", "NSIVCB", "non-specific intraventricular conduction delay"),
    ("sinoatrial blockade", "SAB", "sinoatrial block"),
    ("ventricular extrasystole", "PVC", "ventricular extrasystole(s), any type or origin"),
    ("atrial extrasystole", "PAC", "atrial extrasystole(s), any type or origin"),
    ("left ventricular hypertrophy", "LVH", "left ventricular hypertrophy"),
    ("right ventricular hypertrophy", "RVH", "right ventricular hypertrophy"),
    ("left atrial hypertrophy", "LAH", "left atrial hypertrophy"),
    ("right atrial hypertrophy", "RAH", "right atrial hypertrophy"),
    ("left ventricular overload", "LVO", "left ventricular overload"),
    ("left atrial overload", "LAO", "left atrial overload"),
    ("right atrial overload", "RAO", "right atrial overload"),
    ("pacemaker presence", "PACE", "cardiac pacing, any mode"),
    ("unipolar", "PACE", "cardiac pacing, any mode"),
    ("bipolar", "PACE", "cardiac pacing, any mode"),
    ("biventricular pacing", "PACE", "cardiac pacing, any mode"),
    ("p-synchrony", "PACE", "cardiac pacing, any mode"),
    ("stemi", "STEMI", "ST-elevation myocardial infarction, any wall"),
    ("ischemia", "ISCH", "ischaemia, any wall"),
    ("scar formation", "SCAR", "scar, any wall"),
    ("undefined ischemia/scar/supp.nstemi", "ISCAR", "undefined ischaemia/scar/suspected NSTEMI, any wall"),
    ("non-specific repolarization abnormalities", "NSRA", "non-specific repolarisation abnormality, any wall"),
    ("early repolarization syndrome", "ERS", "early repolarisation syndrome"),
)
DESCRIPTIONS = {label: description for _, label, description in TEXT_MAP}


def map_text(text: str) -> str | None:
    """The named label of one LUDB diagnosis text (None: not in :data:`TEXT_MAP`)."""
    key = " ".join(text.lower().split())
    return next((label for start, label, _ in TEXT_MAP if key.startswith(start)), None)


@dataclass
class LudbConfig(RandomSplitConfig):
    """``root``: the LUDB folder; LUDB has no split, so patients are split at random (seeded)."""


@DATASETS.register("ludb")
class LUDB(PreparedDataset):
    summary = "LUDB v1.0.1 (--root PATH): 200 10-s records, named labels from its diagnosis texts, random split"
    Config: ClassVar[type[DatasetConfig]] = LudbConfig
    label_sets = ("diagnoses", "common")
    patient_namespace = "ludb"

    @cached_property
    def table(self) -> pd.DataFrame:
        return read_csv(self.root / "ludb.csv", ("ID", *CATEGORIES), FIX, dtype=str)

    def label_files(self):
        return [self.root / "ludb.csv"]

    def signal_source(self, fs: int) -> SignalSource:
        ids = self.table["ID"].str.strip().tolist()
        return SignalSource(
            self.name, np.array(ids, dtype=str), WfdbReader(str(self.root), [f"data/{i}" for i in ids]), 10.0
        )

    def annotate(self, source: SignalSource, label_set: str | None) -> Annotations:
        records = np.asarray(source.record_ids, dtype=str)
        annotations = Annotations(
            records, random_patient_splits(records, self.config), split_source=str(self.root / "ludb.csv")
        )
        if label_set is None:
            return annotations
        labels: list[list[str] | None] = []
        for i, row in enumerate(self.table[list(CATEGORIES)].itertuples(index=False)):
            tokens = set()
            for column, cell in zip(CATEGORIES, row):
                for text in str(cell).splitlines() if isinstance(cell, str) else []:
                    if not text.strip():
                        continue
                    label = map_text(text)
                    if label is None:
                        annotations.notes.append(
                            (i, "label dropped", f"{column}: {text.strip()!r} is not in the ludb plugin's text map")
                        )
                    else:
                        tokens.add(label)
            labels.append(sorted(common_tokens("ludb", sorted(tokens))) if label_set == "common" else sorted(tokens))
        annotations.labels = labels
        if label_set == "common":  # one label space across sources: counted in every split, absent = negative
            annotations.empty_is_negative, annotations.count_splits = True, LABELLED_SPLITS
        return annotations

    def describe_labels(self, names, label_set):
        if label_set == "common":
            return order_common(names)
        return sorted(names), {name: DESCRIPTIONS[name] for name in names}, {}
