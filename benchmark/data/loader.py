"""Batches for training and inference: windows of prepared arrays as :class:`Batch` es.

The sampler decides which record, which window and which masking-noise key each sample gets,
deterministically in (seed, epoch), so crops and masks are the same whatever the number of
loader workers or processes, and a resumed run sees the batches an uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch

from benchmark.data.contract import LEADS, DataError, ECGArrays
from benchmark.rng import epoch_keys


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

    def _apply(self, fn) -> Batch:
        return Batch(*(fn(t) for t in (self.signals, self.lead_mask, self.labels, self.index, self.keys)))

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        return self._apply(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> Batch:
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
        labels = self.arrays.targets(index)
        return Batch(
            torch.from_numpy(signals),
            torch.from_numpy(lead_mask),
            torch.from_numpy(labels),
            torch.from_numpy(index),
            torch.from_numpy(keys),
        )

    def __getitem__(self, item: tuple[int, int, int]) -> Batch:
        return self.__getitems__([item])


class WindowBatchSampler(torch.utils.data.Sampler):
    """Yields batches of (record, window start, noise key); deterministic in (seed, epoch).

    ``shuffle`` and ``random_crop`` are for training; evaluation uses all records in order with
    a centred window. ``rank``/``world_size`` shard the epoch for DistributedDataParallel.
    """

    def __init__(
        self,
        indices: np.ndarray,
        n_samples: int,
        window: int,
        batch_size: int,
        train: bool,
        seed: int = 0,
        drop_last: bool | None = None,
        rank: int = 0,
        world_size: int = 1,
    ):
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
            yield list(zip(*(c[b : b + self.batch_size].tolist() for c in columns)))

    def __len__(self) -> int:
        n = len(self.indices) // self.world_size if self.world_size > 1 else len(self.indices)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)


def _unwrap(batch: Any) -> Batch:
    """The loader's collate_fn: ``WindowDataset.__getitems__`` already returns the whole Batch
    (torch types a collate_fn as taking the list of samples, which this dataset never makes)."""
    return batch


def make_loader(
    arrays: ECGArrays,
    indices: np.ndarray,
    window: int,
    batch_size: int,
    train: bool,
    seed: int = 0,
    num_workers: int = 0,
    pin_memory: bool = False,
    lead_subset: np.ndarray | None = None,
    rank: int = 0,
    world_size: int = 1,
) -> torch.utils.data.DataLoader:
    sampler = WindowBatchSampler(
        indices, arrays.n_samples, window, batch_size, train, seed, rank=rank, world_size=world_size
    )
    return torch.utils.data.DataLoader(
        WindowDataset(arrays, window, lead_subset),
        batch_sampler=sampler,
        collate_fn=_unwrap,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
        # its own generator: creating an iterator must not consume the global RNG, or a run
        # resumed mid-epoch would mask differently from an uninterrupted one
        generator=torch.Generator().manual_seed(seed),
    )


def epochs_on(loader: torch.utils.data.DataLoader, device: torch.device) -> Callable[[int], Iterator[Batch]]:
    """``batches(epoch)`` for a training loop: the loader's batches in that epoch's order (its
    :class:`WindowBatchSampler` set to the epoch), each moved to ``device``."""
    sampler = cast(WindowBatchSampler, loader.batch_sampler)  # what make_loader batches with

    def batches(epoch: int) -> Iterator[Batch]:
        sampler.set_epoch(epoch)
        return (batch.to(device, non_blocking=True) for batch in loader)

    return batches
