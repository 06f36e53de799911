"""Throughput and memory of the pieces that decide a run's cost: pretraining steps per method
and preset, feature extraction, the cached data loader. On a CUDA device also model-FLOPs
utilisation (MFU) against the bf16 peak and the largest batch that fits."""

from __future__ import annotations

import resource

import pytest
import torch

from benchmark.build import build_dataset, method_config
from benchmark.data.loader import make_loader
from benchmark.presets import PRESETS
from benchmark.registry import METHODS
from benchmark.train.flops import pretrain_step_flops, synthetic_batch
from benchmark.train.optim import OptimConfig, build_optimizer
from benchmark.train.runtime import autocast

pytestmark = pytest.mark.benchmarks

#: dense bf16 tensor-core peaks (FLOP/s) from NVIDIA's data sheets, for MFU
BF16_PEAK = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "RTX 4090": 165e12}
PRETRAINING = [name for name, cls in METHODS if cls.pretrains]
PRESET_NAMES = ["smoke", "cpu"] + (["paper"] if torch.cuda.is_available() else [])
STEPS = 5


def bf16_peak(device: torch.device) -> float | None:
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


def build(name: str, preset_name: str, device: torch.device):
    preset = PRESETS[preset_name]
    cls = METHODS.get(name)
    torch.manual_seed(0)
    return cls(method_config(cls, preset, {}), preset.input).to(device), preset


def training_step(method, batch, optimizer, device):
    with autocast(device):
        loss = method.pretrain_loss(batch)["loss"]
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


@pytest.mark.parametrize("preset_name", PRESET_NAMES)
@pytest.mark.parametrize("name", PRETRAINING)
def test_pretraining_throughput(benchmark, perf_log, device, name, preset_name):
    method, preset = build(name, preset_name, device)
    batch = synthetic_batch(method, preset.pretrain.batch_size).to(device)
    flops = pretrain_step_flops(method, batch)
    optimizer, _ = build_optimizer(method, OptimConfig(), batch_size=len(batch), total_steps=100)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def step():
        training_step(method, batch, optimizer, device)
        synchronize(device)

    benchmark.pedantic(step, rounds=STEPS, iterations=1, warmup_rounds=1)
    seconds = benchmark.report.stats.stats.median
    peak = bf16_peak(device)
    perf_log.append(
        {
            "benchmark": "pretraining step",
            "method": name,
            "preset": preset_name,
            "batch": len(batch),
            "ms/step": 1e3 * seconds,
            "ECG/s": len(batch) / seconds,
            "GFLOP/step": flops / 1e9,
            "GFLOP/s": flops / seconds / 1e9,
            "MFU": flops / seconds / peak if peak else None,
            "peak MB": peak_memory_mb(device),
        }
    )


@pytest.mark.parametrize("name", PRETRAINING)
def test_feature_extraction_throughput(benchmark, perf_log, device, name):
    method, preset = build(name, "cpu", device)
    method.eval()
    batch = synthetic_batch(method, 256).to(device)

    @torch.no_grad()
    def extract():
        with autocast(device):
            method.features(batch.signals, batch.lead_mask)
        synchronize(device)

    benchmark.pedantic(extract, rounds=STEPS, iterations=1, warmup_rounds=1)
    perf_log.append(
        {
            "benchmark": "feature extraction (cpu preset)",
            "method": name,
            "batch": 256,
            "ECG/s": 256 / benchmark.report.stats.stats.median,
            "peak MB": peak_memory_mb(device),
        }
    )


def test_cached_loader_throughput(benchmark, perf_log, tmp_path_factory):
    """One epoch over the memory-mapped synthetic cache with the cpu preset's window and batch."""
    preset = PRESETS["cpu"]
    dataset = build_dataset("synthetic", preset, {})
    arrays = dataset.load(preset.input.fs, "conditions", tmp_path_factory.mktemp("cache"), progress=False)
    loader = make_loader(arrays, arrays.splits["pretrain"], preset.input.window, preset.pretrain.batch_size, train=True)

    def epoch():
        return sum(len(batch) for batch in loader)

    n = benchmark.pedantic(epoch, rounds=3, iterations=1, warmup_rounds=1)
    perf_log.append(
        {
            "benchmark": "cached data loader (cpu preset, 1 worker)",
            "records": n,
            "ECG/s": n / benchmark.report.stats.stats.median,
        }
    )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the largest batch that fits is a GPU-memory question")
@pytest.mark.parametrize("name", ["lamae", "st_mem"])
def test_largest_paper_batch(perf_log, device, name):
    if name not in METHODS:
        pytest.skip(f"{name} is not registered")
    method, preset = build(name, "paper", device)
    optimizer, _ = build_optimizer(method, OptimConfig(), batch_size=256, total_steps=100)
    fits, batch_size = 0, 64
    while batch_size <= 16384:
        try:
            training_step(method, synthetic_batch(method, batch_size).to(device), optimizer, device)
            synchronize(device)
            fits, batch_size = batch_size, batch_size * 2
        except torch.OutOfMemoryError:
            break
        finally:
            optimizer.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()
    perf_log.append(
        {
            "benchmark": "largest pretraining batch (paper preset, bf16)",
            "method": name,
            "largest batch": fits,
            "GPU": torch.cuda.get_device_name(device),
        }
    )
    assert fits > 0
