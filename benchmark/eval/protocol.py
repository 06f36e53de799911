"""The protocol contract: how a (pre)trained method is evaluated on labelled data.

A protocol plugin (``@PROTOCOLS.register(name)`` in ``benchmark/eval/protocols/``) receives a
:class:`CellContext` and returns the test-split predictions plus protocol details; the runner
scores and stores them. Each protocol's configuration is frozen per preset, separately from
method hyper-parameters (docs/design.md), so every method is evaluated the same way.
"""

from __future__ import annotations

import dataclasses
import io
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from tqdm.auto import tqdm

from benchmark.data.contract import ECGArrays
from benchmark.data.loader import make_loader
from benchmark.method.base import Method
from benchmark.nn import distributed
from benchmark.nn.monitor import TrainingMonitor
from benchmark.nn.training import autocast
from benchmark.registry import PROTOCOLS
from benchmark.storage import DamagedFileError, atomic_write, read_checked

log = logging.getLogger("benchmark")


@dataclass
class Prediction:
    y_true: np.ndarray  # (N, K) 0/1, NaN where the record's source never annotates the label
    y_score: np.ndarray  # (N, K) probabilities
    record_ids: np.ndarray  # (N,)
    patient_ids: np.ndarray | None = None  # (N,): the unit the test-set bootstrap resamples

    def with_patients(self, arrays: ECGArrays) -> Prediction:
        """The same prediction with each record's patient id from ``arrays`` (ValueError naming a
        record id the arrays do not hold)."""
        index = {str(r): i for i, r in enumerate(np.asarray(arrays.record_ids).astype(str))}
        ids = np.asarray(self.record_ids).astype(str)
        missing = [r for r in ids if r not in index]
        if missing:
            raise ValueError(f"predicted record {missing[0]} is not a record of {arrays.name}")
        rows = np.fromiter((index[r] for r in ids), dtype=np.int64, count=len(ids))
        return dataclasses.replace(self, patient_ids=np.asarray(arrays.patient_ids)[rows].astype(str))


@dataclass
class ProtocolOutput:
    prediction: Prediction
    details: dict[str, Any] = field(default_factory=dict)
    #: what the protocol's own training cost (fine-tuning: FLOPs per record, records seen, FLOPs)
    compute: dict[str, Any] = field(default_factory=dict)


@dataclass
class CellContext:
    """Everything one evaluation needs. ``method`` carries the pretrained weights (or random
    ones); ``rebuild(**overrides)`` returns a fresh copy with changed config (e.g. drop_path)
    and the same weights, so protocols never mutate the shared pretrained model."""

    method: Method
    rebuild: Callable[..., Method]
    arrays: ECGArrays
    seed: int
    device: torch.device
    progress: bool = True
    train_indices: np.ndarray | None = None  # default: the train split (label efficiency narrows it)
    lead_subset: np.ndarray | None = None  # (12,) bool: evaluate with only these leads
    #: outputs of the frozen encoder shared by all cells of one pretrained model (see split_outputs)
    cache: dict = field(default_factory=dict)
    #: where ``split_outputs`` keeps them on disk too (seed-independent methods only; None: memory)
    persist: Path | None = None
    #: where a protocol that trains the encoder reports its scalars per log interval (TensorBoard,
    #: run progress); a no-op by default
    monitor: TrainingMonitor = field(default_factory=TrainingMonitor)

    def __post_init__(self):
        if self.train_indices is None:
            self.train_indices = self.arrays.splits["train"]

    @property
    def train_records(self) -> np.ndarray:
        """The records trained on: ``train_indices``, which construction defaults to the train split."""
        return self.arrays.splits["train"] if self.train_indices is None else self.train_indices

    def split_outputs(
        self, split: str, kind: str, compute: Callable[[np.ndarray], tuple[torch.Tensor, np.ndarray]]
    ) -> tuple[torch.Tensor, np.ndarray]:
        """``compute(indices)`` (frozen outputs, labels) of a whole split, computed once per
        (kind, split, lead subset) for all cells of one pretrained model — a label-efficiency
        sweep extracts features once, not once per subset; returns this cell's rows
        (``train_indices`` for the train split)."""
        leads = None if self.lead_subset is None else tuple(np.asarray(self.lead_subset).tolist())
        key = (kind, split, leads)
        if key not in self.cache:
            self.cache[key] = self._stored(kind, split, leads, compute)
        outputs, labels = self.cache[key]
        if split != "train" or np.array_equal(self.train_records, self.arrays.splits["train"]):
            return outputs, labels
        positions = positions_in(self.arrays.splits["train"], self.train_records)
        return outputs[torch.from_numpy(positions)], labels[positions]

    def _stored(
        self,
        kind: str,
        split: str,
        leads: tuple | None,
        compute: Callable[[np.ndarray], tuple[torch.Tensor, np.ndarray]],
    ) -> tuple[torch.Tensor, np.ndarray]:
        """``compute`` of a whole split, read from ``persist`` when an earlier run stored it for
        the same records (the file holds their ids; labels always come from the data)."""
        indices = self.arrays.splits[split]
        if self.persist is None:
            return compute(indices)
        tag = "all" if leads is None else "".join("1" if present else "0" for present in leads)
        path = self.persist / f"{kind}_{split}_{tag}.npz"
        record_ids = np.asarray(self.arrays.record_ids[indices]).astype(str)
        stored = None
        if path.exists():
            try:
                stored = read_checked(path, _stored_outputs, "computing them again")
            except DamagedFileError as exc:
                log.warning("%s", exc)
        if stored is not None and np.array_equal(stored["record_ids"], record_ids):
            return torch.from_numpy(stored["outputs"]), self.arrays.targets(indices)
        outputs, labels = compute(indices)
        if distributed.is_main():
            buffer = io.BytesIO()
            np.savez(buffer, outputs=outputs.numpy(), record_ids=record_ids)
            atomic_write(path, buffer.getvalue())
        return outputs, labels


def _stored_outputs(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as stored:
        return {"outputs": stored["outputs"], "record_ids": stored["record_ids"]}


def positions_in(pool: np.ndarray, members: np.ndarray) -> np.ndarray:
    """Positions of ``members`` in ``pool`` (ValueError if one is missing)."""
    order = np.argsort(pool, kind="stable")
    found = np.searchsorted(pool[order], members).clip(0, len(pool) - 1)
    positions = order[found]
    if not np.array_equal(pool[positions], members):
        raise ValueError("training records must come from the train split")
    return positions


class Protocol:
    """Base class of protocol plugins."""

    name: ClassVar[str]
    summary: ClassVar[str] = ""
    kind: ClassVar[str] = "frozen"  # "frozen" or "finetune": which methods it applies to
    Config: ClassVar[type] = object

    def __init__(self, config=None):
        self.config = config if config is not None else self.Config()

    def applies_to(self, method_cls: type[Method]) -> bool:
        """Whether the method is evaluated under this protocol: it names the protocol's kind or
        the protocol itself in ``Method.evaluations``."""
        return self.kind in method_cls.evaluations or self.name in method_cls.evaluations

    def run(self, ctx: CellContext) -> ProtocolOutput:
        raise NotImplementedError


@torch.no_grad()
def run_inference(
    fn: Callable,
    arrays: ECGArrays,
    indices: np.ndarray,
    window: int,
    batch_size: int,
    device: torch.device,
    desc: str,
    progress: bool = True,
    lead_subset: np.ndarray | None = None,
) -> tuple[torch.Tensor, np.ndarray]:
    """Apply ``fn(signals, lead_mask)`` over records in order (centred windows).

    Returns the concatenated float32 outputs on the CPU and the labels of those records.
    """
    shard = len(indices) >= distributed.world_size()  # under torchrun each rank does a share
    loader = make_loader(
        arrays,
        indices,
        window,
        batch_size,
        train=False,
        lead_subset=lead_subset,
        pin_memory=device.type == "cuda",
        rank=distributed.rank() if shard else 0,
        world_size=distributed.world_size() if shard else 1,
    )
    outputs = []
    for batch in tqdm(
        loader,
        desc=desc,
        unit="batch",
        disable=not (progress and distributed.is_main()),
        leave=False,
        dynamic_ncols=True,
    ):
        batch = batch.to(device, non_blocking=True)
        with autocast(device):
            outputs.append(fn(batch.signals, batch.lead_mask).float())
    rows = torch.cat(outputs)
    if shard:
        rows = distributed.gather_interleaved(rows, len(indices))
    return rows.cpu(), arrays.targets(indices)


def extract_features(
    method: Method,
    arrays: ECGArrays,
    indices: np.ndarray,
    batch_size: int,
    device: torch.device,
    split: str,
    progress: bool = True,
    lead_subset: np.ndarray | None = None,
    fn: Callable | None = None,
) -> tuple[torch.Tensor, np.ndarray]:
    """Frozen pooled features of the given records (eval mode, deterministic); ``fn`` replaces
    ``method.features`` (e.g. ``method.readout_inputs``)."""
    method.to(device).eval()
    return run_inference(
        fn or method.features,
        arrays,
        indices,
        method.input_spec.window,
        batch_size,
        device,
        f"features {method.name} [{split}]",
        progress,
        lead_subset,
    )


PROTOCOLS.declare_base(Protocol, "benchmark.eval.protocol.Protocol")
