"""Multi-process training with DistributedDataParallel, launched by ``torchrun``.

``torchrun --nproc_per_node N -m benchmark run ...`` starts N copies of the command; each reads
its rank from the environment. Every rank trains on its shard of each global batch (so the
global batch and learning rate equal a single-process run's), evaluation is sharded and
gathered, and only rank 0 writes checkpoints, results and the leaderboard. NCCL on GPUs, gloo
on CPUs (the test suite runs 2 gloo processes).
"""

from __future__ import annotations

import contextlib
import logging
import os
from datetime import timedelta

import torch
import torch.distributed as dist

from benchmark.config import ConfigError


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(device: torch.device) -> torch.device:
    """Join the process group torchrun set up; returns this rank's device."""
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timedelta(minutes=30))
    return device


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def broadcast_object(value):
    """Rank 0's ``value`` on every rank (``value`` itself in a single process): how the ranks agree
    on a decision only rank 0 can take, such as holding a claim on work."""
    if world_size() == 1:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def sum_across_ranks(value: torch.Tensor) -> torch.Tensor:
    """Differentiable sum over all processes (the value itself in a single process)."""
    if world_size() == 1:
        return value
    from torch.distributed.nn.functional import all_reduce  # autograd-aware, unlike dist.all_reduce

    return all_reduce(value)


def mean_across_ranks(value: torch.Tensor) -> torch.Tensor:
    if world_size() > 1:
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        value /= world_size()
    return value


def gather_interleaved(rows: torch.Tensor, total: int) -> torch.Tensor:
    """Reassemble rows sharded as ``items[rank::world_size]`` into their original order."""
    world = world_size()
    if world == 1:
        return rows
    per_rank = -(-total // world)
    padded = rows.new_zeros(per_rank, *rows.shape[1:])
    padded[: len(rows)] = rows
    gathered = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(gathered, padded.contiguous())
    stacked = torch.stack(gathered, dim=1)  # (per_rank, world, ...): row j of rank r = item j*world + r
    return stacked.reshape(per_rank * world, *rows.shape[1:])[:total]


def data_parallel(module: torch.nn.Module, device: torch.device, *, find_unused_parameters: bool = False):
    """``module`` as the training loops run it: wrapped in DistributedDataParallel under torchrun
    (each rank trains on its share of every batch; gradients are averaged in ``backward``), itself
    in one process."""
    if world_size() <= 1:
        return module
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(
        module,
        device_ids=[device] if device.type == "cuda" else None,
        find_unused_parameters=find_unused_parameters,
    )


def local_batch_size(global_batch: int) -> int:
    world = world_size()
    if global_batch % world:
        raise ConfigError(
            f"batch size {global_batch} is not divisible by the {world} processes; "
            f"choose a multiple of {world} (--set pretrain.batch_size=...)"
        )
    return global_batch // world


@contextlib.contextmanager
def session(device: torch.device):
    """Join torchrun's process group for the duration of a command (no-op for one process).
    Yields this rank's device; ranks other than 0 only log warnings."""
    if not launched_by_torchrun():
        yield device
        return
    device = init(device)
    if not is_main():
        logging.getLogger("benchmark").setLevel(logging.WARNING)
    try:
        yield device
    finally:
        shutdown()
