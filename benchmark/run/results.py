"""The results store: one JSON file per finished cell, raw test predictions beside it.

A cell — (dataset, label set, preset, method, protocol, variant, seed) — is the unit of work
and of results; a method variant (``lamae[la_mask_ratio=0]``) is a method of its own, stored
under its file name (``lamae@la_mask_ratio=0/``). Files are written atomically (temporary file + rename), predictions first, so
a JSON file exists only for a complete cell; that is what makes a killed run safe to repeat.
Each record stores the signature of every configuration that produced it; asking for the same
cell under another configuration is refused instead of silently mixing results.

A cell whose training diverged (a NaN or infinite loss in pretraining or fine-tuning) is
finished too: its record has ``"status": "diverged"``, ``"metrics": null``, a ``failure``
(stage, step, loss, message) and the curve up to the divergence, and no predictions. Reports
show it as diverged and never average it in (:func:`is_diverged`).
"""

from __future__ import annotations

import json
import logging
import zipfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from benchmark.config import signature
from benchmark.eval.protocol import Prediction
from benchmark.method.variant import parse_variant
from benchmark.storage import DamagedFileError, atomic_write, read_json

log = logging.getLogger("benchmark")

# Top-level folders whose names start with INTERNAL hold no results: checkpoints, bootstrap
# resamples, claims on running work (benchmark/run/units.py), job logs (benchmark/run/launch.py).
INTERNAL = "_"
CHECKPOINTS = "_checkpoints"
BOOTSTRAP = "_bootstrap"  # test-set resamples, persisted by the reports (benchmark/report/comparison.py)
RUNS = "_runs"  # run-state files (benchmark/run/state.py)
TENSORBOARD = "_tensorboard"  # event files of --log tensorboard
#: the parts of a cell's configuration that define its pretrained model (the checkpoint's key)
PRETRAIN_KEYS = (
    "dataset",
    "dataset_config",
    "data",
    "input",
    "method",
    "method_config",
    "seed",
    "pretrain",
    "pretrain_data",
)
DIVERGED = "diverged"
IDENTITY = "identity.json"  # in a checkpoint folder: the configuration of the model it holds


def is_diverged(record: dict) -> bool:
    return record.get("status") == DIVERGED


def pretraining_signature(config: dict) -> str:
    """Key of the pretrained model a cell's configuration (``record["config"]``) was evaluated on."""
    return signature({k: config[k] for k in PRETRAIN_KEYS if k in config})


class StaleResultError(RuntimeError):
    pass


@dataclass(frozen=True)
class Cell:
    dataset: str
    label_set: str
    preset: str
    method: str
    protocol: str
    seed: int
    variant: str = ""  # e.g. a training-set size or lead subset; "" for the plain protocol

    @property
    def relpath(self) -> Path:
        variant = f"_{self.variant}" if self.variant else ""
        return Path(
            self.dataset,
            self.label_set,
            self.preset,
            parse_variant(self.method).file_name,
            f"{self.protocol}{variant}_seed{self.seed}.json",
        )

    def describe(self) -> str:
        variant = f" [{self.variant}]" if self.variant else ""
        return f"{self.method} / {self.protocol}{variant} / seed {self.seed}"


RECOMPUTE = "it is left out of reports and `run` recomputes it"


def _read_record(path: Path) -> dict | None:
    """A finished cell's record with readable predictions; None (with a warning naming the file)
    when the JSON or its ``.preds.npz`` is missing, truncated or not a result."""
    if not path.exists():
        return None
    try:
        record = read_json(path, RECOMPUTE)
        if "cell" not in record or "metrics" not in record:
            return None
        if is_diverged(record) or is_stale(record):  # no predictions (nothing was scored), or refused anyway
            return record
        preds = path.parent / record["predictions"]
        with np.load(preds) as saved:
            missing = {"y_true", "y_score", "record_ids"} - set(saved.files)
        if missing:
            raise ValueError(f"{preds.name} lacks {', '.join(sorted(missing))}")
    except DamagedFileError as exc:
        log.warning("%s", exc)
        return None
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
        log.warning("%s is damaged (%s: %s); %s", path, type(exc).__name__, exc, RECOMPUTE)
        return None
    return record


def is_stale(record: dict) -> bool:
    """A result written by an older version of the benchmark, before results carried the
    signature of the configuration that produced them: what produced it cannot be checked."""
    return "signature" not in record


def stale_message(path: Path) -> str:
    return (
        f"{path} was written by an older version of the benchmark (it has no configuration signature, so what "
        f"produced it cannot be checked); re-run with --rerun to replace it, or --results DIR to keep it"
    )


class ResultStore:
    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, cell: Cell) -> Path:
        return self.root / cell.relpath

    def load(self, cell: Cell) -> dict | None:
        """The cell's record (with its ``_path``, as :meth:`records` gives it), or None when it is
        absent or damaged (a damaged one is named in a warning and recomputed by the next run)."""
        record = _read_record(self.path(cell))
        if record is not None:
            record["_path"] = str(self.path(cell))
        return record

    def finished(self, cell: Cell) -> dict:
        """The record of a cell that is known to be finished."""
        record = self.load(cell)
        if record is None:
            raise FileNotFoundError(f"{self.path(cell)}: expected a finished result")
        return record

    def is_finished(self, cell: Cell, signature: str) -> bool:
        """True if the cell exists with this signature; raises if it exists with another."""
        record = self.load(cell)
        if record is None:
            return False
        if is_stale(record):
            raise StaleResultError(stale_message(self.path(cell)))
        if record["signature"] != signature:
            raise StaleResultError(
                f"{self.path(cell)} was produced with a different configuration (code defaults or "
                f"--set changed). Re-run with --rerun to replace it, or --results DIR to keep both."
            )
        return True

    def write(self, cell: Cell, record: dict, prediction: Prediction) -> Path:
        path = self.path(cell)
        preds = path.with_suffix(".preds.npz")
        y_true = np.asarray(prediction.y_true, dtype=np.float64)
        arrays = {
            "y_true": np.nan_to_num(y_true, nan=0.0).astype(np.uint8),
            "label_known": np.isfinite(y_true),  # False: the record's source never annotates the label
            "y_score": prediction.y_score.astype(np.float32),
            "record_ids": np.asarray(prediction.record_ids).astype(str),
        }
        if prediction.patient_ids is not None:  # the unit of the test-set bootstrap
            arrays["patient_ids"] = np.asarray(prediction.patient_ids).astype(str)
        atomic_write(preds, lambda h: np.savez_compressed(h, **arrays))  # type: ignore[arg-type]  # numpy stubs: **kwds could name allow_pickle
        record = {**record, "cell": asdict(cell), "predictions": preds.name}
        atomic_write(path, lambda h: h.write(json.dumps(record, indent=1).encode()))
        return path

    def write_diverged(self, cell: Cell, record: dict) -> Path:
        """A cell whose training diverged: the record alone (no predictions), ``status`` diverged."""
        path = self.path(cell)
        path.with_suffix(".preds.npz").unlink(missing_ok=True)  # of an earlier finished run (--rerun)
        record = {**record, "status": DIVERGED, "metrics": None, "cell": asdict(cell)}
        atomic_write(path, lambda h: h.write(json.dumps(record, indent=1).encode()))
        return path

    def records(self) -> Iterator[dict]:
        """Every finished cell under the root, diverged ones included (internal folders —
        checkpoints, run states, claims, logs — and temporary files skipped; damaged and stale files
        named in a warning and left out)."""
        for path in sorted(self.root.rglob("*.json")):
            if path.relative_to(self.root).parts[0].startswith(INTERNAL) or path.name.startswith("."):
                continue
            record = _read_record(path)
            if record is not None and is_stale(record):
                log.warning("%s; it is left out of reports", stale_message(path))
            elif record is not None:
                record["_path"] = str(path)
                yield record

    @staticmethod
    def predictions(record: dict) -> dict[str, np.ndarray]:
        """The raw test predictions of a record read by :meth:`records`: ``y_true`` (float, NaN where
        the label is unknown for the record), ``y_score``, ``record_ids`` and, for results written
        since they are stored, ``patient_ids``."""
        path = Path(record["_path"]).parent / record["predictions"]
        with np.load(path) as preds:
            out = {k: preds[k] for k in preds.files}
        y_true = out["y_true"].astype(np.float64)
        if "label_known" in out:
            y_true[~out.pop("label_known")] = np.nan
        out["y_true"] = y_true
        return out

    @property
    def checkpoints(self) -> Path:
        return self.root / CHECKPOINTS

    def checkpoint_dir(self, dataset: str, preset: str, method: str, seed: int, signature: str) -> Path:
        return self.checkpoints / dataset / preset / f"{parse_variant(method).file_name}_seed{seed}_{signature[:8]}"

    def frozen_outputs_dir(self, dataset: str, preset: str, method: str, signature: str) -> Path:
        """Frozen outputs of a seed-independent method (e.g. measured ECG features), kept across
        seeds and runs (derived data, kept with the checkpoints)."""
        return self.checkpoints / "frozen" / dataset / preset / f"{parse_variant(method).file_name}_{signature[:16]}"

    @property
    def flops_dir(self) -> Path:
        """Cached FLOPs-per-step measurements (derived data, kept with the checkpoints)."""
        return self.root / CHECKPOINTS / "flops"
