"""Pretraining pools: pretrain on other datasets, or several, than the one evaluated.

``run --pretrain-data NAME[:ROOT],...`` replaces the evaluation dataset's ``pretrain`` split
with the listed datasets' pretraining records (each dataset's own ``pretrain`` split: train
patients and patients in no labelled split). Naming the evaluation dataset itself (without a
root, or with its root) adds its pretrain split, e.g. ``--pretrain-data ptbxl,mimic-iv-ecg:/m``.

Leakage guard: a validation or test patient of the evaluation dataset in the pool is refused
with an error, never a warning (the same recording under another name and patient id is caught by
content instead: benchmark/data/duplicates.py). Patient ids are compared within a
:attr:`~benchmark.data.contract.DatasetPlugin.patient_namespace`, which datasets naming the same people
share (two PTB-XL copies, MIMIC-IV-ECG and a WFDB folder of MIMIC records).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmark.data.contract import DataError, DatasetPlugin, ECGArrays, LeakageError, SignalRows, data_identity
from benchmark.data.duplicates import FINGERPRINT_DIM


class ConcatenatedRows:
    """Row-wise concatenation of (memory-mapped) arrays, indexed like one, without copying."""

    def __init__(self, parts: list[np.ndarray | SignalRows]):
        self.parts = parts
        self.offsets = np.cumsum([0] + [len(p) for p in parts])
        self.shape = (int(self.offsets[-1]), *parts[0].shape[1:])
        self.ndim, self.dtype = len(self.shape), parts[0].dtype

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index) -> np.ndarray:
        index = np.asarray(index, dtype=np.int64)
        rows = np.atleast_1d(index)
        if len(rows) and (rows.min() < 0 or rows.max() >= len(self)):
            raise IndexError(f"row index out of range 0..{len(self) - 1}")
        part = np.searchsorted(self.offsets, rows, side="right") - 1
        out = np.empty((len(rows), *self.shape[1:]), dtype=self.dtype)
        for p in np.unique(part):
            chosen = part == p
            out[chosen] = self.parts[p][rows[chosen] - self.offsets[p]]
        return out[0] if index.ndim == 0 else out


def parse_pool(items: list[str]) -> list[tuple[str, str | None]]:
    """``["ptbxl", "mimic-iv-ecg:/data/m"]`` -> ``[("ptbxl", None), ("mimic-iv-ecg", "/data/m")]``."""
    out = []
    for item in items:
        name, _, root = item.partition(":")
        if not name:
            raise DataError(f"--pretrain-data {item!r}: expected NAME or NAME:ROOT")
        out.append((name, root or None))
    return out


def _same_root(root: str, config) -> bool:
    own = getattr(config, "root", None)
    return own is not None and Path(root).expanduser().resolve() == Path(own).expanduser().resolve()


def pretraining_pool(
    items: list[str],
    dataset: DatasetPlugin,
    arrays: ECGArrays,
    build: Callable[[str, dict], DatasetPlugin],
    overrides: dict,
    fs: int,
    cache_root: Path,
    progress: bool = True,
) -> tuple[ECGArrays, list[dict] | None]:
    """The arrays to pretrain on and their identity (None: the evaluation dataset's own split).

    ``build(name, overrides)`` makes a dataset plugin as the runner does; ``NAME:ROOT`` sets that
    dataset's ``root``.
    """
    if not items:
        return arrays, None
    members: list[tuple[DatasetPlugin, ECGArrays]] = []
    for name, root in parse_pool(items):
        if name == dataset.name and (root is None or _same_root(root, dataset.config)):
            members.append((dataset, arrays))
            continue
        scoped = {**overrides, name: {**overrides.get(name, {}), **({"root": root} if root else {})}}
        plugin = build(name, scoped)
        members.append((plugin, plugin.load_pretraining(fs, cache_root, progress)))
    check_pool_leakage(dataset, arrays, members)
    lengths = {plugin.name: member.n_samples for plugin, member in members}
    if len(set(lengths.values())) > 1:
        raise DataError(
            f"pretraining pool: records have different lengths at {fs} Hz ({lengths} samples); give "
            f"every pool dataset the same duration, e.g. --set NAME.preprocess.duration_s=10"
        )
    offsets = np.cumsum([0] + [len(member.signals) for _, member in members])
    pooled = ECGArrays(
        name="+".join(plugin.name for plugin, _ in members),
        fs=fs,
        signals=ConcatenatedRows([member.signals for _, member in members]),
        lead_mask=np.concatenate([np.asarray(member.lead_mask) for _, member in members]),
        labels=np.zeros((int(offsets[-1]), 0), dtype=np.uint8),
        label_names=[],
        patient_ids=np.concatenate([plugin.qualified_patient_ids(member) for plugin, member in members]),
        record_ids=np.concatenate(
            [np.char.add(f"{plugin.name}:", np.asarray(member.record_ids).astype(str)) for plugin, member in members]
        ),
        splits={
            "pretrain": np.concatenate(
                [member.splits["pretrain"] + offset for (_, member), offset in zip(members, offsets)]
            ),
            **{split: np.zeros(0, dtype=np.int64) for split in ("train", "val", "test")},
        },
        record_fingerprints=np.concatenate(  # generated members have none: zeros, which match nothing
            [
                np.zeros((len(member.signals), FINGERPRINT_DIM), np.float16)
                if member.record_fingerprints is None
                else np.asarray(member.record_fingerprints)
                for _, member in members
            ]
        ),
    )
    identity = [data_identity(plugin, member) for plugin, member in members]
    return pooled, identity


def check_pool_leakage(
    dataset: DatasetPlugin, arrays: ECGArrays, members: list[tuple[DatasetPlugin, ECGArrays]]
) -> None:
    """Refuse a pool holding a validation or test patient of the evaluation dataset."""
    qualified = dataset.qualified_patient_ids(arrays)
    held_out = {str(p) for split in ("val", "test") for p in qualified[arrays.splits[split]]}
    for plugin, member in members:
        pooled = {str(p) for p in plugin.qualified_patient_ids(member)[member.splits["pretrain"]]}
        leaked = held_out & pooled
        if leaked:
            shown = sorted(p.removeprefix(f"{plugin.patient_namespace}:") for p in leaked)[:3]
            raise LeakageError(
                f"--pretrain-data {plugin.name}: {len(leaked)} validation/test patient(s) of {dataset.name} are in "
                f"the pretraining pool (e.g. {', '.join(shown)}; namespace "
                f"{plugin.patient_namespace!r}); pretraining on them leaks the evaluation set. Give these patients "
                f"the same split in both datasets or remove them from {plugin.name}"
            )
