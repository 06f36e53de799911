"""Measuring training speed: timed pretraining steps, interleaved between methods, model-FLOPs
utilisation (MFU) against the device's bf16 peak, and the largest batch that fits.

The benchmarks (``benchmarks/test_throughput.py``) and the GPU check (``benchmarks/gpu_check.sh``)
measure with these pieces, so their numbers mean the same thing. FLOPs are the suite's own
count (:mod:`benchmark.train.flops`): the matrix products and attention of the model, not the
element-wise work, as MFU is defined (Chowdhery et al. 2022, "PaLM", appendix B).
"""

from __future__ import annotations

import contextlib
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from benchmark.data.loader import Batch
from benchmark.method.base import Method
from benchmark.train.flops import synthetic_batch
from benchmark.train.optim import OptimConfig, build_optimizer

#: dense (not 2:4-sparse) bf16 tensor-core peaks in FLOP/s from NVIDIA's data sheets, matched
#: against ``torch.cuda.get_device_name`` in this order (the first key it contains wins)
BF16_PEAK: dict[str, float] = {
    "GH200": 989e12,
    "H100 PCIe": 756e12,
    "H100 NVL": 835e12,
    "H200 NVL": 835e12,
    "H100": 989e12,  # SXM
    "H200": 989e12,  # SXM
    "A100": 312e12,
    "L40S": 362e12,
    "RTX 4090": 165e12,
}


def bf16_peak(device: torch.device) -> float | None:
    """The device's dense bf16 peak (FLOP/s), None for a CPU or an unlisted GPU."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in BF16_PEAK.items() if key in name), None)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_mb(device: torch.device) -> float:
    """CUDA: peak allocated by torch. CPU: the process's peak resident set (monotonic)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bf16_autocast(device: torch.device):
    """bf16 autocast on any device (the GPU check's precision, also on CPU in its tests)."""
    return torch.autocast(device.type, dtype=torch.bfloat16)


@dataclass
class StepRunner:
    """One method's pretraining step (forward, backward, AdamW) on a fixed synthetic batch.

    ``loss`` computes the loss of a batch (``method.pretrain_loss`` by default, or a
    ``torch.compile``'d version of it); ``precision`` is the autocast context of the forward pass.
    """

    method: Method
    batch: Batch
    optimizer: torch.optim.Optimizer
    device: torch.device
    loss: Callable[[Batch], torch.Tensor]
    precision: Callable[[torch.device], contextlib.AbstractContextManager]

    @classmethod
    def build(
        cls,
        method: Method,
        batch_size: int,
        device: torch.device,
        precision: Callable[[torch.device], contextlib.AbstractContextManager],
        loss: Callable[[Batch], torch.Tensor] | None = None,
    ) -> StepRunner:
        method.to(device).train()
        optimizer, _ = build_optimizer(method, OptimConfig(), batch_size=batch_size, total_steps=100)
        batch = synthetic_batch(method, batch_size).to(device)
        return cls(method, batch, optimizer, device, loss or (lambda b: method.pretrain_loss(b)["loss"]), precision)

    def step(self) -> None:
        with self.precision(self.device):
            loss = self.loss(self.batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    def timed(self, steps: int = 1) -> float:
        """Seconds per step over ``steps`` steps (one device sync at the end)."""
        synchronize(self.device)
        started = time.perf_counter()
        for _ in range(steps):
            self.step()
        synchronize(self.device)
        return (time.perf_counter() - started) / steps


def interleaved_seconds(runners: dict[str, StepRunner], rounds: int, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds of one step of every runner in each of ``rounds`` rounds. Every round steps all
    runners once, in an order rotated from round to round, so a change of the machine's load
    hits all of them alike and per-round ratios between runners stay fair."""
    names = list(runners)
    for name in names:
        for _ in range(warmup):
            runners[name].step()
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            seconds[name].append(runners[name].timed())
    return seconds


def median_ratio(numerator: list[float], denominator: list[float]) -> float:
    """The median over rounds of numerator[r] / denominator[r]."""
    return statistics.median(a / b for a, b in zip(numerator, denominator))


def largest_batch(
    build: Callable[[int], StepRunner], start: int, limit: int, device: torch.device
) -> tuple[int, float | None]:
    """The largest batch (``start`` doubled while it fits, at most ``limit``) whose training step
    runs without running out of device memory, and its peak memory (MB); (0, None) if ``start``
    does not fit. ``build(batch_size)`` makes a fresh runner (model, optimizer, batch)."""
    fits, peak, batch_size = 0, None, start
    while batch_size <= limit:
        runner = None
        try:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            runner = build(batch_size)
            runner.timed()
            fits, peak, batch_size = batch_size, peak_memory_mb(device), batch_size * 2
        except torch.OutOfMemoryError:
            break
        finally:
            del runner
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return fits, peak
