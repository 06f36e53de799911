"""``python -m benchmark prepare``: read, check and cache a dataset once (``run`` does it too)."""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmark.cli.common import UsageError, add_overrides, add_plugins, dataset_overrides, load_plugins
from benchmark.data.contract import default_cache_root


def register(sub: argparse._SubParsersAction) -> None:
    prep = sub.add_parser("prepare", help="read, check and cache a dataset once (run does it automatically)")
    prep.set_defaults(handler=cmd_prepare)
    prep.add_argument("--dataset", required=True, help="dataset name (see the list command)")
    prep.add_argument("--root", type=Path, default=None, help="dataset folder")
    prep.add_argument("--fs", type=int, default=None, help="sampling rate to prepare, Hz (default: the preset's)")
    prep.add_argument("--preset", default="cpu", help="preset whose sampling rate is the default (default: cpu)")
    prep.add_argument("--labels", dest="label_set", default=None, help="label set (default: the dataset's first)")
    prep.add_argument("--workers", type=int, default=None, help="parallel processes (default: all available cores)")
    add_overrides(prep, "dataset setting, e.g. ptbxl.preprocess.bandpass_hz=0.67,40")
    add_plugins(prep)
    prep.add_argument("--cache-dir", type=Path, default=None, help=f"prepared data (default: {default_cache_root()})")
    prep.add_argument("--no-progress", dest="progress", action="store_false", help="hide progress bars")


def cmd_prepare(args: argparse.Namespace) -> int:
    from benchmark.data.files import PreparedDataset, coverage_lines
    from benchmark.run.build import build_dataset, check_scopes
    from benchmark.run.presets import get_preset

    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be >= 1, got {args.workers}")
    load_plugins(args.plugins)
    overrides = dataset_overrides(args)
    preset = get_preset(args.preset).with_overrides(overrides)
    dataset = build_dataset(args.dataset, preset, overrides)
    check_scopes(
        {k: v for k, v in overrides.items() if k != "input"},
        {"dataset": [args.dataset, *dataset.member_names()]},
        "prepare",
    )
    if isinstance(dataset, PreparedDataset):  # the only datasets with preparation processes
        dataset.workers = args.workers
    label_set = args.label_set or dataset.label_sets[0]
    dataset.check_label_set(label_set)
    fs = args.fs or preset.input.fs
    arrays = dataset.load(fs, label_set, args.cache_dir or default_cache_root(), args.progress)
    usable = int(arrays.lead_mask.any(axis=1).sum())
    print(
        f"{dataset.name} at {fs} Hz, label set {label_set!r}: {len(arrays.signals)} records ({usable} usable), "
        f"{len(arrays.label_names)} labels; " + ", ".join(f"{k} {len(v)}" for k, v in arrays.splits.items())
    )
    coverage = coverage_lines(arrays)
    if coverage:  # sources with different vocabularies: a label a source never gives is unknown, not negative
        print("labels each source can give (the others are unknown for its records, in no loss or metric):")
        print("\n".join(f"  {line}" for line in coverage))
    if arrays.fingerprint:  # equal on every machine that holds the same data, wherever it sits
        print(f"data fingerprint {arrays.fingerprint}")
    return 0
