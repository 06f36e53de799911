"""Throughput and memory of the pieces that decide a run's cost: pretraining steps per method
and preset, feature extraction, the cached data loader. On a CUDA device also model-FLOPs
utilisation (MFU) against the bf16 peak and the largest batch that fits."""

from __future__ import annotations

import statistics

import pytest
import torch

from benchmark.data.loader import make_loader
from benchmark.nn.training import autocast
from benchmark.registry import METHODS
from benchmark.run.build import build_dataset, method_config
from benchmark.run.presets import ANCHOR_METHOD, PRESETS
from benchmark.train.flops import pretrain_step_flops, synthetic_batch
from benchmark.train.throughput import (
    StepRunner,
    bf16_peak,
    interleaved_seconds,
    largest_batch,
    median_ratio,
    peak_memory_mb,
    synchronize,
)

pytestmark = pytest.mark.benchmarks

PRETRAINING = [name for name, cls in METHODS if cls.pretrains]
PRESET_NAMES = ["smoke", "cpu"] + (["paper"] if torch.cuda.is_available() else [])
STEPS = 5
ROUNDS = 9  # interleaved rounds of every method's pretraining step


def build(name: str, preset_name: str, device: torch.device):
    preset = PRESETS[preset_name]
    cls = METHODS.get(name)
    torch.manual_seed(0)
    return cls(method_config(cls, preset), preset.input).to(device), preset


@pytest.mark.parametrize("preset_name", PRESET_NAMES)
def test_pretraining_throughput(perf_log, device, preset_name):
    """Every method's training step (forward, backward, fused AdamW) at the preset's batch,
    interleaved round by round; FLOP/s relative to the anchor method (LAMAE) is the median of the
    per-round ratios, so a load that shifts during the benchmark cancels out."""
    runners = {}
    for name in PRETRAINING:
        method, preset = build(name, preset_name, device)
        runners[name] = StepRunner.build(method, preset.pretrain.batch_size, device, autocast)
    flops = {name: pretrain_step_flops(r.method, r.batch) for name, r in runners.items()}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds = interleaved_seconds(runners, ROUNDS)
    flop_rate = {name: [flops[name] / s for s in seconds[name]] for name in runners}
    peak = bf16_peak(device)
    for name, runner in runners.items():
        median_s = statistics.median(seconds[name])
        perf_log.append(
            {
                "benchmark": "pretraining step",
                "method": name,
                "preset": preset_name,
                "batch": len(runner.batch),
                "ms/step": 1e3 * median_s,
                "ECG/s": len(runner.batch) / median_s,
                "GFLOP/step": flops[name] / 1e9,
                "GFLOP/s": flops[name] / median_s / 1e9,
                f"FLOP/s vs {ANCHOR_METHOD}": median_ratio(flop_rate[name], flop_rate[ANCHOR_METHOD]),
                "MFU": flops[name] / median_s / peak if peak else None,
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
            "ECG/s": 256 / benchmark.stats.stats.median,
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
            "ECG/s": n / benchmark.stats.stats.median,
        }
    )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the largest batch that fits is a GPU-memory question")
@pytest.mark.parametrize("name", ["lamae", "st_mem"])
def test_largest_paper_batch(perf_log, device, name):
    method, _ = build(name, "paper", device)
    fits, peak = largest_batch(lambda size: StepRunner.build(method, size, device, autocast), 64, 16384, device)
    perf_log.append(
        {
            "benchmark": "largest pretraining batch (paper preset, bf16)",
            "method": name,
            "largest batch": fits,
            "peak MB": peak,
            "GPU": torch.cuda.get_device_name(device),
        }
    )
    assert fits > 0
