"""The dataset contract: what every dataset plugin produces and every protocol consumes.

A dataset plugin turns its source (a generator, a PhysioNet folder, a user's arrays) into an
:class:`ECGArrays`: signals in millivolts in the fixed lead order :data:`LEADS`, a lead mask
(missing or unusable leads), multi-hot labels, patient ids and patient-disjoint splits. The
arrays may be memory-mapped from a cache folder, so nothing here assumes they fit in RAM.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import typing
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

from benchmark.config import to_jsonable
from benchmark.registry import DATASETS
from benchmark.storage import read_json

LEADS: tuple[str, ...] = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")


SPLITS: tuple[str, ...] = ("pretrain", "train", "val", "test")


LIMB_LEADS: tuple[str, ...] = LEADS[:6]


class DataError(ValueError):
    """Bad input data; the message names the file or record and says how to fix it."""


class LeakageError(DataError):
    """A patient of the evaluation splits appears where it must not (pretraining or training)."""


def default_cache_root() -> Path:
    """Where prepared datasets live: ``$ECGBENCH_CACHE`` or ``~/.cache/ecgbench``."""
    return Path(os.environ.get("ECGBENCH_CACHE", Path.home() / ".cache" / "ecgbench"))


@dataclass(frozen=True)
class InputSpec:
    """What a model sees: sampling rate and window length (a preset fixes it for all methods)."""

    fs: int = 100
    window_s: float = 10.0
    n_leads: int = len(LEADS)

    def __post_init__(self):
        if self.fs <= 0 or self.window_s <= 0:
            raise ValueError(f"InputSpec needs fs > 0 and window_s > 0, got {self}")

    @property
    def window(self) -> int:
        return int(round(self.fs * self.window_s))


class SignalRows(Protocol):
    """What :class:`ECGArrays` needs of ``signals`` besides an ndarray: an (N, 12, T) shape and
    row indexing that returns an ndarray (a pretraining pool's concatenation of memmaps without a
    copy, :class:`benchmark.data.pool.ConcatenatedRows`)."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    @property
    def ndim(self) -> int: ...

    @property
    def dtype(self) -> np.dtype: ...

    def __len__(self) -> int: ...

    def __getitem__(self, index: Any) -> np.ndarray: ...


@dataclass
class ECGArrays:
    """A dataset materialised at one sampling rate.

    ``signals`` (N, 12, T) float16/float32 in mV, leads in :data:`LEADS` order (possibly a
    read-only memmap); ``lead_mask`` (N, 12) bool, True where the lead is present and usable;
    ``labels`` (N, K) uint8 multi-hot; ``splits`` maps each of :data:`SPLITS` to record indices.
    ``label_parents`` optionally maps a label to its parent labels (ICD hierarchy).
    ``record_fingerprints`` (N, D): each record's content fingerprint (benchmark/data/duplicates.py),
    for datasets prepared from files; None for generated data.
    ``label_sources`` (N,) str and ``source_labels``: where one dataset pools sources labelled with
    different vocabularies (the CinC Challenge's CPSC 2018 records name 9 classes; a transfer task
    pools PTB-XL, LUDB and CinC), each record's source and, per source, the labels of the label set
    it annotates (names beyond ``label_names`` allowed). A label its source does not annotate is
    unknown for the record — neither positive nor negative, in no loss and no metric
    (:meth:`known_labels`, :meth:`targets`); a source not in ``source_labels`` (or ``""``) and
    ``label_sources`` None mean every label is known. A positive is always known.
    ``fingerprint`` identifies the records, their signals and their splits by content (set by the
    dataset plugin's ``load``; label-set independent: results add the label set), so a result
    does not depend on where the data sits; "" when unknown (arrays built in memory).
    """

    name: str
    fs: int
    signals: np.ndarray | SignalRows
    lead_mask: np.ndarray
    labels: np.ndarray
    label_names: list[str]
    patient_ids: np.ndarray
    record_ids: np.ndarray
    splits: dict[str, np.ndarray]
    label_descriptions: dict[str, str] = field(default_factory=dict)
    label_parents: dict[str, list[str]] = field(default_factory=dict)
    record_fingerprints: np.ndarray | None = None
    label_sources: np.ndarray | None = None
    source_labels: dict[str, list[str]] = field(default_factory=dict)
    fingerprint: str = ""

    _ARRAYS: ClassVar[tuple[str, ...]] = ("signals", "lead_mask", "labels", "patient_ids", "record_ids")
    _OPTIONAL_ARRAYS: ClassVar[tuple[str, ...]] = ("record_fingerprints", "label_sources")

    def __post_init__(self):
        n = len(self.signals)
        if self.signals.ndim != 3 or self.signals.shape[1] != len(LEADS):
            raise DataError(f"{self.name}: signals must be (N, 12, T), got {self.signals.shape}")
        for attr, shape in (("lead_mask", (n, len(LEADS))), ("labels", (n, len(self.label_names)))):
            if getattr(self, attr).shape != shape:
                raise DataError(f"{self.name}: {attr} must be {shape}, got {getattr(self, attr).shape}")
        for attr in ("patient_ids", "record_ids", *(a for a in self._OPTIONAL_ARRAYS if getattr(self, a) is not None)):
            if len(getattr(self, attr)) != n:
                raise DataError(f"{self.name}: {attr} has {len(getattr(self, attr))} rows, expected {n}")
        missing = set(SPLITS) - set(self.splits)
        if missing:
            raise DataError(f"{self.name}: splits {sorted(missing)} missing")
        self.splits = {k: np.asarray(v, dtype=np.int64) for k, v in self.splits.items()}
        self.check_no_leakage()

    @property
    def n_samples(self) -> int:
        return self.signals.shape[-1]

    def check_no_leakage(self) -> None:
        """Refuse (not warn) when an evaluation patient leaks into pretraining or training.

        train, val and test must be patient-disjoint; pretraining may reuse training patients
        (labels are not used there) but never a validation or test patient.
        """
        pid = {k: set(np.asarray(self.patient_ids)[v].tolist()) for k, v in self.splits.items()}
        for a, b in (("train", "val"), ("train", "test"), ("val", "test"), ("pretrain", "val"), ("pretrain", "test")):
            shared = pid[a] & pid[b]
            if shared:
                example = sorted(map(str, shared))[:3]
                raise LeakageError(
                    f"{self.name}: {len(shared)} patient(s) appear in both the {a} and {b} splits "
                    f"(e.g. {', '.join(example)}); splits must be patient-disjoint"
                )

    # -- cache format: a folder of .npy files + meta.json, written atomically ------------------
    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=directory.name + ".tmp-", dir=directory.parent))
        try:
            for attr in self._ARRAYS + self._OPTIONAL_ARRAYS:
                if getattr(self, attr) is not None:
                    np.save(tmp / f"{attr}.npy", np.asarray(getattr(self, attr)))
            np.savez(tmp / "splits.npz", **self.splits)  # type: ignore[arg-type]  # numpy stubs: **kwds could name allow_pickle
            meta = {
                f.name: getattr(self, f.name)
                for f in fields(self)
                if f.name in ("name", "fs", "label_names", "label_descriptions", "label_parents", "source_labels")
            }
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
            if directory.exists():
                shutil.rmtree(directory)
            os.replace(tmp, directory)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    @classmethod
    def load(cls, directory: Path, mmap: bool = True) -> ECGArrays:
        """Arrays from ``directory``; one that is absent there is read from ``meta["arrays_dir"]``
        (relative), so label views of a prepared cache share its signals (benchmark/data/files.py)."""
        directory = Path(directory)
        meta = read_json(directory / "meta.json", f"delete the folder {directory} to prepare it again")
        shared = directory / meta.pop("arrays_dir", ".")
        arrays = {}
        for attr in cls._ARRAYS + cls._OPTIONAL_ARRAYS:
            path = directory / f"{attr}.npy"
            path = path if path.is_file() else shared / f"{attr}.npy"
            if attr in cls._OPTIONAL_ARRAYS and not path.is_file():
                continue
            arrays[attr] = np.load(path, mmap_mode="r" if mmap and attr == "signals" else None)
        with np.load(directory / "splits.npz") as splits:
            split_map = {k: splits[k] for k in splits.files}
        return cls(**meta, **arrays, splits=split_map)

    def subset_labels(self, keep: list[str]) -> ECGArrays:
        """Same records, only the named label columns (in the given order)."""
        index = [self.label_names.index(k) for k in keep]
        return ECGArrays(**{**self.__dict__, "labels": self.labels[:, index], "label_names": list(keep)})

    def known_labels(self, indices: np.ndarray | slice = slice(None)) -> np.ndarray:
        """(len(indices), K) bool: whether each record's source annotates each label."""
        labels = np.asarray(self.labels[indices])
        known = np.ones(labels.shape, dtype=bool)
        if self.label_sources is None:
            return known
        sources = np.asarray(self.label_sources[indices]).astype(str)
        for source, given in self.source_labels.items():
            rows = sources == source
            if rows.any():
                known[rows] = np.isin(self.label_names, given)[None, :]
        return known | (labels > 0)

    def targets(self, indices: np.ndarray | slice = slice(None)) -> np.ndarray:
        """float32 (len(indices), K) labels of the given records, NaN where the label is unknown for
        the record (:meth:`known_labels`): what every loss and metric reads."""
        targets = np.asarray(self.labels[indices], dtype=np.float32)
        targets[~self.known_labels(indices)] = np.nan
        return targets

    def label_coverage(self) -> dict[str, dict[str, Any]]:
        """Per source: its records and the labels of ``label_names`` it can give and cannot (for
        preparation reports); empty when every record knows every label."""
        if self.label_sources is None:
            return {}
        sources = np.asarray(self.label_sources).astype(str)
        coverage = {}
        for source in sorted(set(sources.tolist())):
            given = self.source_labels.get(source)
            gives = [n for n in self.label_names if given is None or n in given]
            coverage[source or "(unknown source)"] = {
                "records": int((sources == source).sum()),
                "labels": gives,
                "unknown": [n for n in self.label_names if n not in gives],
            }
        return coverage


@dataclass
class DatasetConfig:
    """Base of every dataset plugin's typed configuration."""


def content_config(config: DatasetConfig) -> dict:
    """The config without its fields typed ``Path``: they say where data sits, and what they
    point to enters a result's identity through the arrays' content fingerprint."""
    try:
        hints = typing.get_type_hints(type(config))
    except NameError:  # a plugin's annotation that cannot be resolved at run time: judge by value
        hints = {}

    def is_location(name: str) -> bool:
        hint = hints.get(name)
        return isinstance(getattr(config, name), Path) or (hint is not None and Path in (hint, *typing.get_args(hint)))

    return {f.name: to_jsonable(getattr(config, f.name)) for f in dataclasses.fields(config) if not is_location(f.name)}


def data_identity(plugin: DatasetPlugin, arrays: ECGArrays) -> dict:
    """What a result's data is: the dataset, its config and its content fingerprint, never where
    it sits. Arrays without a fingerprint (a plugin that sets none) are identified by the whole
    config, paths included: the best that is known about them."""
    if not arrays.fingerprint:
        return {"dataset": plugin.name, "dataset_config": to_jsonable(plugin.config)}
    return {"dataset": plugin.name, "dataset_config": plugin.content_config(), "data": arrays.fingerprint}


class DatasetPlugin:
    """Base class of dataset plugins (``@DATASETS.register(name)`` on the subclass).

    Subclasses define ``Config`` (a :class:`DatasetConfig` dataclass), ``summary`` (one line for
    ``benchmark list``), ``label_sets`` (first = default) and :meth:`load`.
    """

    name: ClassVar[str]
    summary: ClassVar[str] = ""
    Config: ClassVar[type[DatasetConfig]] = DatasetConfig
    label_sets: ClassVar[tuple[str, ...]] = ("default",)

    def __init__(self, config: DatasetConfig | None = None):
        self.config = config if config is not None else self.Config()
        # builds another dataset as the run does (preset + --set), NAME and ROOT (or None); set by
        # benchmark/run/build.py for datasets made of other datasets (member_names)
        self.build_member: Callable[[str, str | None], DatasetPlugin] | None = None

    def content_config(self) -> dict:
        """The config as part of a result's identity: without where the data sits (``Path``
        fields; a dataset naming locations otherwise overrides this)."""
        return content_config(self.config)

    def member_names(self) -> list[str]:
        """Datasets this one is made of (their ``--set NAME.*`` scopes belong to the run)."""
        return []

    @property
    def result_name(self) -> str:
        """The dataset's name in result paths and leaderboard tables (a composite names its parts)."""
        return self.name

    def qualified_patient_ids(self, arrays: ECGArrays) -> np.ndarray:
        """Patient ids as ``namespace:id``, comparable across datasets (the pool's leakage guard)."""
        return np.char.add(f"{self.patient_namespace}:", np.asarray(arrays.patient_ids).astype(str))

    def load(self, fs: int, label_set: str, cache_root: Path, progress: bool = True) -> ECGArrays:
        raise NotImplementedError

    def load_pretraining(self, fs: int, cache_root: Path, progress: bool = True) -> ECGArrays:
        """The records this dataset offers as (unlabelled) pretraining data: its ``pretrain``
        split. File datasets override it so that label-less folders can serve too."""
        return self.load(fs, self.label_sets[0], cache_root, progress)

    @property
    def patient_namespace(self) -> str:
        """Datasets whose patient ids name the same people share a namespace (MIMIC-IV-ECG and a
        WFDB folder of MIMIC records both use ``mimic-iv``); the pretraining-pool leakage guard
        compares patient ids within one namespace."""
        return self.name

    def check_label_set(self, label_set: str) -> None:
        if label_set not in self.label_sets:
            raise DataError(
                f"dataset {self.name!r} has no label set {label_set!r}; valid: {', '.join(self.label_sets)}"
            )


DATASETS.declare_base(DatasetPlugin, "ecgbench.DatasetPlugin")
