"""Cross-source transfer on the shared labels: train (and select) on some sources, test on others.

``--dataset transfer --labels common --set transfer.train=cinc,ludb --set transfer.test=ptbxl``
(roots as ``NAME:ROOT``, e.g. ``transfer.train=cinc:/data/cinc2021,ludb:/data/ludb``; every
member also takes its own ``--set NAME.*``). Each member is loaded with its ``common`` label set
(benchmark/data/common_labels.py: one label map per source's code system), and:

- ``train`` = the training sources' train splits, ``val`` = their validation splits (model
  selection never sees a test source); their own test splits are not used;
- ``test`` = every labelled record of the test sources (``test_records=all``, default: the
  largest honest test set, since no test-source record is trained on), or only their own test
  splits (``test_records=test``, e.g. to compare with an in-source run on the same records);
- ``pretrain`` = the training sources' pretraining records (plus the test sources' when
  ``test_records=test``: their training patients); ``--pretrain-data`` replaces it as for any
  dataset;
- the label space: the common labels with at least ``min_count`` positives among the training
  records **and** among the test records (a label without test positives has no AUROC).

Patient ids are qualified by each source's patient namespace (``ptbxl:123``), so patient-level
leakage checks work across sources; sources share no patients by id, and the same recording
under two names is found by the runner's content guard (benchmark/data/duplicates.py). Members
are built with ``min_count=1`` so that a label missing from a member's view truly has no positive
there: it is a negative column for the member's records whose source annotates it, and unknown for
the others (``ECGArrays.label_sources``: CinC's CPSC 2018 records never annotate sinus
bradycardia, so they are not its negatives; an unknown label is in no loss and no metric). A member
without per-source vocabularies (PTB-XL, LUDB: every common label is in their code systems)
annotates every common label.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from ecgbench import DATASETS, SPLITS, DataError, DatasetConfig, DatasetPlugin, ECGArrays
from ecgbench.data import (
    COMMON_LABELS,
    ConcatenatedRows,
    data_identity,
    order_common,
    parse_pool,
    signature,
    to_jsonable,
)

log = logging.getLogger("benchmark")

TEST_RECORDS = ("all", "test")


@dataclass
class TransferConfig(DatasetConfig):
    """``train`` / ``test``: NAME[:ROOT] sources (comma-separated on the command line; without a
    root, the member's own ``--set NAME.root``)."""

    train: tuple[str, ...] = ("cinc", "ludb")
    test: tuple[str, ...] = ("ptbxl",)
    test_records: str = "all"  # all | test: every labelled record of the test sources, or their test split
    min_count: int = 5  # positives a label needs among the training records and among the test records

    def __post_init__(self):
        if not self.train or not self.test:
            raise ValueError(
                "transfer needs training and test sources, e.g. --set transfer.train=cinc:/data/cinc,ludb:/data/ludb "
                "--set transfer.test=ptbxl:/data/ptbxl"
            )
        train, test = ({name for name, _ in parse_pool(list(side))} for side in (self.train, self.test))
        if train & test:
            raise ValueError(
                f"transfer: {', '.join(sorted(train & test))} is both a training and a test source; "
                f"to train and test within one source, run that dataset itself"
            )
        if self.test_records not in TEST_RECORDS:
            raise ValueError(f"test_records must be one of {', '.join(TEST_RECORDS)}, got {self.test_records!r}")
        if self.min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {self.min_count}")


@DATASETS.register("transfer")
class Transfer(DatasetPlugin):
    summary = "cross-source transfer on the common labels (--set transfer.train=cinc,ludb --set transfer.test=ptbxl)"
    Config: ClassVar[type[DatasetConfig]] = TransferConfig
    label_sets = ("common",)

    def _sources(self, role: str) -> list[tuple[str, str | None]]:
        return parse_pool(list(getattr(self.config, role)))

    def member_names(self) -> list[str]:
        return [name for role in ("train", "test") for name, _ in self._sources(role)]

    @property
    def result_name(self) -> str:
        train, test = ("+".join(name for name, _ in self._sources(role)) for role in ("train", "test"))
        return f"{train}-to-{test}"

    def content_config(self) -> dict:
        """The settings without the members' roots (their content is in the arrays' fingerprint)."""
        config = to_jsonable(self.config)
        for role in ("train", "test"):
            config[role] = [name for name, _ in self._sources(role)]
        return config

    def qualified_patient_ids(self, arrays: ECGArrays) -> np.ndarray:
        return np.asarray(arrays.patient_ids).astype(str)  # already namespace:id

    def _member(self, name: str, root: str | None) -> DatasetPlugin:
        if self.build_member is None:
            raise DataError("transfer's member datasets are built by the runner (benchmark/run/build.py build_dataset)")
        plugin = self.build_member(name, root)
        if "common" not in plugin.label_sets:
            raise DataError(
                f"transfer: dataset {name!r} has no 'common' label set (datasets with one: ptbxl, ludb, cinc)"
            )
        if hasattr(plugin.config, "min_count"):
            plugin.config = dataclasses.replace(plugin.config, min_count=1)
        return plugin

    def load(self, fs: int, label_set: str, cache_root: Path, progress: bool = True) -> ECGArrays:
        self.check_label_set(label_set)
        members = [
            (role, plugin, plugin.load(fs, "common", cache_root, progress))
            for role in ("train", "test")
            for plugin in (self._member(name, root) for name, root in self._sources(role))
        ]
        lengths = {plugin.name: member.n_samples for _, plugin, member in members}
        if len(set(lengths.values())) > 1:
            raise DataError(
                f"transfer: records have different lengths at {fs} Hz ({lengths} samples); give every source the "
                f"same duration, e.g. --set NAME.preprocess.duration_s=10"
            )
        offsets = np.cumsum([0] + [len(member.signals) for _, _, member in members])
        rows = {split: [] for split in SPLITS}
        for (role, _, member), offset in zip(members, offsets):
            if role == "train":  # its own test split is used nowhere: the test is another source
                for split in ("pretrain", "train", "val"):
                    rows[split].append(member.splits[split] + offset)
            else:
                tested = ("train", "val", "test") if self.config.test_records == "all" else ("test",)
                rows["test"] += [member.splits[split] + offset for split in tested]
                if self.config.test_records == "test":
                    rows["pretrain"].append(member.splits["pretrain"] + offset)
        splits = {split: np.sort(np.concatenate(parts)) for split, parts in rows.items()}
        columns = [label.name for label in COMMON_LABELS]
        labels = np.zeros((int(offsets[-1]), len(columns)), dtype=np.uint8)
        for (_, _, member), offset in zip(members, offsets):
            for j, name in enumerate(member.label_names):
                labels[offset : offset + len(member.signals), columns.index(name)] = member.labels[:, j]
        sources, source_labels = [], {}
        for _, plugin, member in members:  # per record: the source that annotated it, qualified by the member
            own = np.asarray(member.label_sources if member.label_sources is not None else [""] * len(member.signals))
            own = own.astype(str)
            sources.append(np.where(own == "", plugin.name, np.char.add(f"{plugin.name}:", own)))
            source_labels.update({f"{plugin.name}:{source}": list(v) for source, v in member.source_labels.items()})
        train_counts, test_counts = labels[splits["train"]].sum(axis=0), labels[splits["test"]].sum(axis=0)
        kept = [j for j in range(len(columns)) if min(train_counts[j], test_counts[j]) >= self.config.min_count]
        if not kept:
            raise DataError(
                f"transfer {self.result_name}: no common label has {self.config.min_count} positives among both the "
                f"training and the test records; lower --set transfer.min_count"
            )
        names, descriptions, _ = order_common([columns[j] for j in kept])
        log.info(
            "transfer %s: %d labels with >= %d training and test positives (%s)",
            self.result_name,
            len(names),
            self.config.min_count,
            ", ".join(f"{columns[j]} {train_counts[j]}/{test_counts[j]}" for j in kept),
        )
        arrays = ECGArrays(
            name=self.result_name,
            fs=fs,
            signals=ConcatenatedRows([member.signals for _, _, member in members]),
            lead_mask=np.concatenate([np.asarray(member.lead_mask) for _, _, member in members]),
            labels=labels[:, [columns.index(name) for name in names]],
            label_names=names,
            patient_ids=np.concatenate([plugin.qualified_patient_ids(member) for _, plugin, member in members]),
            record_ids=np.concatenate(
                [
                    np.char.add(f"{plugin.name}:", np.asarray(member.record_ids).astype(str))
                    for _, plugin, member in members
                ]
            ),
            splits=splits,
            label_descriptions=descriptions,
            record_fingerprints=None
            if any(member.record_fingerprints is None for _, _, member in members)
            else np.concatenate([np.asarray(member.record_fingerprints) for _, _, member in members]),
            label_sources=np.concatenate(sources) if source_labels else None,
            source_labels=source_labels,
        )
        # by content, as every member: which records in which role, never where they sit
        arrays.fingerprint = signature(
            [self.content_config(), [(role, data_identity(plugin, member)) for role, plugin, member in members]]
        )
        return arrays
