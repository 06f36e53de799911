"""The dataset contract: what every dataset plugin produces and every protocol consumes.

A dataset plugin turns its source (a generator, a PhysioNet folder, a user's arrays) into an
:class:`ECGArrays`: signals in millivolts in the fixed lead order :data:`LEADS`, a lead mask
(missing or unusable leads), multi-hot labels, patient ids and patient-disjoint splits. The
arrays may be memory-mapped from a cache folder, so nothing here assumes they fit in RAM.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import ClassVar, Iterator

import numpy as np
import torch

from .rng import epoch_keys

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


@dataclass
class ECGArrays:
    """A dataset materialised at one sampling rate.

    ``signals`` (N, 12, T) float16/float32 in mV, leads in :data:`LEADS` order (possibly a
    read-only memmap); ``lead_mask`` (N, 12) bool, True where the lead is present and usable;
    ``labels`` (N, K) uint8 multi-hot; ``splits`` maps each of :data:`SPLITS` to record indices.
    ``label_parents`` optionally maps a label to its parent labels (ICD hierarchy).
    """

    name: str
    fs: int
    signals: np.ndarray
    lead_mask: np.ndarray
    labels: np.ndarray
    label_names: list[str]
    patient_ids: np.ndarray
    record_ids: np.ndarray
    splits: dict[str, np.ndarray]
    label_descriptions: dict[str, str] = field(default_factory=dict)
    label_parents: dict[str, list[str]] = field(default_factory=dict)

    _ARRAYS: ClassVar[tuple[str, ...]] = ("signals", "lead_mask", "labels", "patient_ids", "record_ids")

    def __post_init__(self):
        n = len(self.signals)
        if self.signals.ndim != 3 or self.signals.shape[1] != len(LEADS):
            raise DataError(f"{self.name}: signals must be (N, 12, T), got {self.signals.shape}")
        for attr, shape in (("lead_mask", (n, len(LEADS))), ("labels", (n, len(self.label_names)))):
            if getattr(self, attr).shape != shape:
                raise DataError(f"{self.name}: {attr} must be {shape}, got {getattr(self, attr).shape}")
        for attr in ("patient_ids", "record_ids"):
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
            for attr in self._ARRAYS:
                np.save(tmp / f"{attr}.npy", np.asarray(getattr(self, attr)))
            np.savez(tmp / "splits.npz", **self.splits)
            meta = {f.name: getattr(self, f.name) for f in fields(self)
                    if f.name in ("name", "fs", "label_names", "label_descriptions", "label_parents")}
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
            if directory.exists():
                shutil.rmtree(directory)
            os.replace(tmp, directory)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    @classmethod
    def load(cls, directory: Path, mmap: bool = True) -> "ECGArrays":
        """Arrays from ``directory``; one that is absent there is read from ``meta["arrays_dir"]``
        (relative), so label views of a prepared cache share its signals (benchmark/filedata.py)."""
        directory = Path(directory)
        meta = json.loads((directory / "meta.json").read_text())
        shared = directory / meta.pop("arrays_dir", ".")
        arrays = {
            attr: np.load(path if (path := directory / f"{attr}.npy").is_file() else shared / f"{attr}.npy",
                          mmap_mode="r" if mmap and attr == "signals" else None)
            for attr in cls._ARRAYS
        }
        with np.load(directory / "splits.npz") as splits:
            split_map = {k: splits[k] for k in splits.files}
        return cls(**meta, **arrays, splits=split_map)

    def subset_labels(self, keep: list[str]) -> "ECGArrays":
        """Same records, only the named label columns (in the given order)."""
        index = [self.label_names.index(k) for k in keep]
        return ECGArrays(**{**self.__dict__, "labels": self.labels[:, index], "label_names": list(keep)})


@dataclass
class DatasetConfig:
    """Base of every dataset plugin's typed configuration."""


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


# -- batching ----------------------------------------------------------------------------------
@dataclass
class Batch:
    """A batch as methods see it: float32 signals (B, 12, T), lead mask (B, 12), labels (B, K).

    ``keys`` (B,) int64 identify each sample within its epoch; methods draw their masking noise
    from them (:mod:`benchmark.rng`), so a sample is masked the same way however batches are
    split across processes or a run is resumed.
    """

    signals: torch.Tensor
    lead_mask: torch.Tensor
    labels: torch.Tensor
    index: torch.Tensor  # record indices into the ECGArrays (for bookkeeping)
    keys: torch.Tensor

    def _apply(self, fn) -> "Batch":
        return Batch(*(fn(t) for t in (self.signals, self.lead_mask, self.labels, self.index, self.keys)))

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Batch":
        return self._apply(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> "Batch":
        return self._apply(torch.Tensor.pin_memory)

    def __len__(self) -> int:
        return len(self.signals)


class WindowDataset(torch.utils.data.Dataset):
    """Fetches whole batches of (record index, window start, noise key) from the arrays.

    The sampler chooses the windows, so crops are reproducible whatever the number of loader
    workers. Masked leads are zeroed so that no method can read garbage from a missing lead.
    """

    def __init__(self, arrays: ECGArrays, window: int, lead_subset: np.ndarray | None = None):
        if window > arrays.n_samples:
            raise DataError(
                f"{arrays.name}: records have {arrays.n_samples} samples at {arrays.fs} Hz but the "
                f"model window needs {window}; use a preset with a shorter window"
            )
        self.arrays, self.window = arrays, window
        self.lead_subset = lead_subset  # (12,) bool: evaluate with only these leads

    def __len__(self) -> int:
        return len(self.arrays.signals)

    def __getitems__(self, items: list[tuple[int, int, int]]) -> Batch:
        index, starts, keys = (np.array(column, dtype=np.int64) for column in zip(*items))
        order = np.argsort(index, kind="stable")  # sorted reads are much faster on a memmap
        rows = self.arrays.signals[index[order]]  # stored dtype (float16): crop before converting
        if self.window < self.arrays.n_samples:
            offsets = starts[order, None, None] + np.arange(self.window)[None, None, :]
            rows = np.take_along_axis(rows, np.broadcast_to(offsets, (len(items), len(LEADS), self.window)), axis=2)
        signals = np.empty((len(items), len(LEADS), self.window), dtype=np.float32)
        signals[order] = rows
        lead_mask = np.asarray(self.arrays.lead_mask[index], dtype=bool)
        if self.lead_subset is not None:
            lead_mask = lead_mask & self.lead_subset[None, :]
        signals[~lead_mask] = 0.0
        labels = np.asarray(self.arrays.labels[index], dtype=np.float32)
        return Batch(torch.from_numpy(signals), torch.from_numpy(lead_mask),
                     torch.from_numpy(labels), torch.from_numpy(index), torch.from_numpy(keys))

    def __getitem__(self, item: tuple[int, int, int]) -> Batch:
        return self.__getitems__([item])


class WindowBatchSampler(torch.utils.data.Sampler):
    """Yields batches of (record, window start, noise key); deterministic in (seed, epoch).

    ``shuffle`` and ``random_crop`` are for training; evaluation uses all records in order with
    a centred window. ``rank``/``world_size`` shard the epoch for DistributedDataParallel.
    """

    def __init__(self, indices: np.ndarray, n_samples: int, window: int, batch_size: int,
                 train: bool, seed: int = 0, drop_last: bool | None = None,
                 rank: int = 0, world_size: int = 1):
        self.indices = np.asarray(indices, dtype=np.int64)
        self.n_samples, self.window, self.batch_size = n_samples, window, batch_size
        self.train, self.seed, self.epoch = train, seed, 0
        self.drop_last = train if drop_last is None else drop_last
        self.rank, self.world_size = rank, world_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _epoch_items(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        span = self.n_samples - self.window
        if self.train:
            rng = np.random.default_rng([self.seed, self.epoch])
            order = rng.permutation(self.indices)
            starts = rng.integers(0, span + 1, size=len(order))
        else:
            order = self.indices
            starts = np.full(len(order), span // 2)
        keys = epoch_keys(self.seed, self.epoch, order)
        if self.world_size > 1:
            usable = len(order) - len(order) % self.world_size if self.train else len(order)
            shard = slice(self.rank, usable, self.world_size)
            order, starts, keys = order[shard], starts[shard], keys[shard]
        return order, starts, keys

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        columns = self._epoch_items()
        stop = len(columns[0]) - len(columns[0]) % self.batch_size if self.drop_last else len(columns[0])
        for b in range(0, stop, self.batch_size):
            yield list(zip(*(c[b:b + self.batch_size].tolist() for c in columns)))

    def __len__(self) -> int:
        n = len(self.indices) // self.world_size if self.world_size > 1 else len(self.indices)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)


def _unwrap(batch: Batch) -> Batch:
    return batch


def make_loader(arrays: ECGArrays, indices: np.ndarray, window: int, batch_size: int, train: bool,
                seed: int = 0, num_workers: int = 0, pin_memory: bool = False,
                lead_subset: np.ndarray | None = None, rank: int = 0, world_size: int = 1,
                ) -> torch.utils.data.DataLoader:
    sampler = WindowBatchSampler(indices, arrays.n_samples, window, batch_size, train, seed,
                                 rank=rank, world_size=world_size)
    return torch.utils.data.DataLoader(
        WindowDataset(arrays, window, lead_subset), batch_sampler=sampler,
        collate_fn=_unwrap, num_workers=num_workers, pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
        # its own generator: creating an iterator must not consume the global RNG, or a run
        # resumed mid-epoch would mask differently from an uninterrupted one
        generator=torch.Generator().manual_seed(seed),
    )
