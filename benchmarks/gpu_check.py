"""The GPU check: how fast the ``paper`` preset pretrains on this GPU, in one command.

    bash benchmarks/gpu_check.sh            # about 5-8 minutes on one H100/H200

For LAMAE, ST-MEM and Ind_P (``--methods``) at the preset's batch, under bf16 autocast with
fused AdamW (as ``run`` trains on a GPU), it measures

1. **eager** steps: ``--steps`` timed steps after ``--warmup`` steps;
2. the **largest batch** that fits (the preset's batch doubled until the device runs out of
   memory or ``--max-batch``), and the eager speed at that batch (a quarter of the steps);
3. **compiled** steps: the loss under ``torch.compile(dynamic=True)``, as
   ``--set pretrain.compile=true`` compiles it; the warm-up time (mostly compilation) is reported.

Each row gives ms/step, ECG/s, achieved TFLOP/s (the suite's FLOP count of a step,
benchmark/train/flops.py) and MFU against the device's dense bf16 peak
(benchmark/train/throughput.py, ``--peak-tflops`` for an unlisted device). Rows are written to
``--out`` (``benchmarks/results/gpu-check-<device>.md`` and ``.json``) as they are measured, so
an interrupted check keeps what it measured; phases that would start after ``--time-limit``
seconds are skipped and listed. A phase that fails (e.g. a compiler error) is recorded with its
error and the exit status is 1. The tests run it on the CPU with a tiny configuration
(tests/test_gpu_check.py).
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import re
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from tabulate import tabulate

from benchmark.config import ConfigError, parse_overrides
from benchmark.method.variant import split_names
from benchmark.provenance import describe_device, git_state, package_versions
from benchmark.registry import PluginError
from benchmark.run.build import check_scopes, method_spec
from benchmark.run.presets import get_preset
from benchmark.train.flops import pretrain_step_flops
from benchmark.train.runtime import resolve_device
from benchmark.train.throughput import StepRunner, bf16_autocast, bf16_peak, largest_batch, peak_memory_mb

RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="benchmarks/gpu_check.sh", description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="paper")
    parser.add_argument(
        "--methods", default="lamae,st_mem,ind_p", help="comma-separated pretraining methods or variants"
    )
    parser.add_argument("--steps", type=int, default=200, help="timed steps per method and mode")
    parser.add_argument("--warmup", type=int, default=20, help="untimed steps first (compilation happens here)")
    parser.add_argument("--max-batch", type=int, default=16384, help="stop the largest-batch search here")
    parser.add_argument("--compile-backend", default="inductor", help="torch.compile backend ('eager' in tests)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the device's bf16 peak, if not listed")
    parser.add_argument("--time-limit", type=float, default=420.0, help="seconds after which no phase starts")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SCOPE.FIELD=VALUE")
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args(argv)


class Check:
    """The measured rows and their files; every row is written out as soon as it exists."""

    def __init__(self, args: argparse.Namespace, device: torch.device):
        self.args, self.device, self.started = args, device, time.perf_counter()
        overrides = parse_overrides(args.overrides)
        check_scopes(overrides, {})  # the preset's scopes only; a method's settings go in its brackets
        self.preset = get_preset(args.preset).with_overrides(overrides)
        #: each method of --methods resolved once (a variant checked against its config)
        self.specs = {spec.name: spec for spec in (method_spec(n, self.preset) for n in split_names(args.methods))}
        self.peak = args.peak_tflops * 1e12 if args.peak_tflops else bf16_peak(device)
        self.hardware = describe_device(device)
        slug = re.sub(r"[^a-z0-9]+", "-", self.hardware.lower()).strip("-")[:60]
        self.path = args.out / f"gpu-check-{slug}"
        self.rows: list[dict] = []
        self.skipped: list[str] = []
        self.failed = False

    def time_left(self) -> bool:
        return time.perf_counter() - self.started < self.args.time_limit

    def runner(self, name: str, batch_size: int, compiled: bool = False) -> StepRunner:
        """A fresh model (initialised on the device: seconds, not minutes, for Ind_P's 1.1 B
        parameters), fused AdamW and a synthetic batch."""
        torch.manual_seed(0)
        with torch.device(self.device):
            method = self.specs[name].build(self.preset.input)
        loss = None
        if compiled:
            forward = torch.compile(method.pretrain_loss, dynamic=True, backend=self.args.compile_backend)
            loss = lambda batch: forward(batch)["loss"]  # noqa: E731
        return StepRunner.build(method, batch_size, self.device, bf16_autocast, loss)

    def measure(self, mode: str, make_runner: Callable[[], StepRunner], steps: int) -> dict:
        """Warm up (timed as a whole: compilation), then time ``steps`` steps."""
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        runner = make_runner()
        warmup_s = runner.timed(self.args.warmup) * self.args.warmup if self.args.warmup else 0.0
        seconds = runner.timed(steps)
        flops = pretrain_step_flops(runner.method, runner.batch)
        batch = len(runner.batch)
        return {
            "method": runner.method.name,
            "mode": mode,
            "batch": batch,
            "ms/step": 1e3 * seconds,
            "ECG/s": batch / seconds,
            "TFLOP/s": flops / seconds / 1e12,
            "MFU": flops / seconds / self.peak if self.peak else None,
            "warm-up s": warmup_s,
            "peak MB": peak_memory_mb(self.device),
        }

    def phase(self, label: str, measure: Callable[[], dict]) -> None:
        """Run one measurement unless time is up; record its row, or its error."""
        if not self.time_left():
            self.skipped.append(label)
            return
        try:
            row = measure()
        except KeyboardInterrupt:  # the wrapper's hard time limit: keep what was measured
            self.skipped.append(f"{label} (interrupted)")
            self.write()
            raise
        except Exception as error:  # a failing phase must not lose the others' results
            self.failed = True
            method, mode = label.split(maxsplit=1)
            row = {"method": method, "mode": mode, "error": f"{type(error).__name__}: {error}"[:300]}
        finally:
            gc.collect()
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
        self.rows.append(row)
        self.write()

    def largest(self, name: str) -> dict:
        start = self.preset.pretrain.batch_size
        fits, peak = largest_batch(lambda size: self.runner(name, size), start, self.args.max_batch, self.device)
        if not fits:
            raise RuntimeError(f"the preset's batch of {start} does not fit")
        row = self.measure("eager, largest batch", partial(self.runner, name, fits), max(1, self.args.steps // 4))
        return {**row, "peak MB": peak}

    def write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "hardware": self.hardware,
            "bf16 peak TFLOP/s": self.peak / 1e12 if self.peak else None,
            "preset": self.preset.name,
            "overrides": self.args.overrides,
            "steps": self.args.steps,
            "warmup": self.args.warmup,
            "compile backend": self.args.compile_backend,
            "git": git_state(),
            "packages": package_versions(),
            "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "elapsed s": time.perf_counter() - self.started,
            "skipped": self.skipped,
            "rows": self.rows,
        }
        self.path.with_suffix(".json").write_text(json.dumps(payload, indent=1) + "\n")
        self.path.with_suffix(".md").write_text(render(payload))


def render(payload: dict) -> str:
    peak = payload["bf16 peak TFLOP/s"]
    lines = [
        f"# GPU check on {payload['hardware']}",
        "",
        f"`bash benchmarks/gpu_check.sh` at code {payload['git']['commit']}"
        f"{' (dirty)' if payload['git']['dirty'] else ''}; torch {payload['packages'].get('torch')}; "
        f"preset `{payload['preset']}`{' with ' + ', '.join(payload['overrides']) if payload['overrides'] else ''}; "
        f"bf16 autocast, fused AdamW; {payload['steps']} timed steps after {payload['warmup']} warm-up steps; "
        f"compiled with `torch.compile(dynamic=True, backend={payload['compile backend']!r})`. "
        f"MFU against a dense bf16 peak of {f'{peak:.0f} TFLOP/s' if peak else '(unknown: no MFU)'}. "
        f"{payload['elapsed s']:.0f} s in all.",
        "",
        tabulate(payload["rows"], headers="keys", tablefmt="github", floatfmt=".4g"),
        "",
    ]
    if payload["skipped"]:
        lines += [f"Skipped (time limit): {', '.join(payload['skipped'])}.", ""]
    eager = [r for r in payload["rows"] if r.get("mode") == "eager" and "MFU" in r and r["MFU"] is not None]
    if eager:
        best = max(eager, key=lambda r: r["MFU"])
        lines += [f"Best eager MFU at the preset's batch: {best['method']} {best['MFU']:.1%}.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        check = Check(args, resolve_device(args.device))
        for spec in check.specs.values():  # an unknown or untrainable method fails before any work
            if not spec.cls.pretrains:
                raise ConfigError(f"{spec.name} does not pretrain; the GPU check times pretraining steps")
        methods = list(check.specs)
    except (ConfigError, PluginError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    batch = check.preset.pretrain.batch_size
    for name in methods:  # the baseline numbers of every method first, the costlier phases after
        check.phase(f"{name} eager", partial(check.measure, "eager", partial(check.runner, name, batch), args.steps))
    for name in methods:
        check.phase(f"{name} largest batch", partial(check.largest, name))
    for name in methods:
        compiled = partial(check.runner, name, batch, True)
        check.phase(f"{name} compiled", partial(check.measure, "compiled", compiled, args.steps))
    check.write()
    print(check.path.with_suffix(".md").read_text())
    print(f"wrote {check.path}.md and .json")
    return 1 if check.failed else 0


if __name__ == "__main__":
    sys.exit(main())
