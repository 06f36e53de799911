"""``python -m benchmark validate-dataset``: check that a dataset meets the dataset contract (exit
status 1 when it does not); the checks are :mod:`benchmark.run.validate_dataset`'s.

A subcommand of its own rather than ``validate --dataset`` [choice]: ``validate``'s target, its
``--presets`` and its ``--set`` scopes are a method's (model sizes, a variant's settings), while a
dataset is checked at one rate, for one label set, from one folder; its options are ``prepare``'s,
since it loads the dataset as ``prepare`` and ``run`` do.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmark.cli.common import add_overrides, add_plugins, dataset_overrides, load_plugins, registered_in_file
from benchmark.data.contract import default_cache_root
from benchmark.registry import DATASETS


def register(sub: argparse._SubParsersAction) -> None:
    check = sub.add_parser("validate-dataset", help="check that a dataset meets the dataset contract (exit 1 if not)")
    check.set_defaults(handler=cmd_validate_dataset)
    check.add_argument("target", help="a dataset name, or a plugin .py file (every dataset it registers)")
    check.add_argument("--root", type=Path, default=None, help="dataset folder")
    check.add_argument("--labels", dest="label_set", default=None, help="label set (default: the dataset's first)")
    check.add_argument("--preset", default="cpu", help="preset whose rate and window to check (default: cpu)")
    check.add_argument("--fs", type=int, default=None, help="sampling rate to check, Hz (default: the preset's)")
    add_overrides(check, "dataset setting, e.g. ludb.preprocess.bandpass_hz=0.67,40")
    add_plugins(check, "load another plugin file first (repeatable)")
    check.add_argument("--cache-dir", type=Path, default=None, help=f"prepared data (default: {default_cache_root()})")
    check.add_argument("--no-progress", dest="progress", action="store_false", help="hide progress bars")


def cmd_validate_dataset(args: argparse.Namespace) -> int:
    from benchmark.run.build import build_dataset, check_scopes
    from benchmark.run.presets import get_preset
    from benchmark.run.validate_dataset import render_dataset_report, validate_dataset

    load_plugins(args.plugins)
    target = Path(args.target)
    if target.suffix == ".py":
        hint = "decorate its DatasetPlugin subclass with @DATASETS.register('name') (from ecgbench import DATASETS)"
        names = registered_in_file(target, DATASETS, hint)
    else:
        DATASETS.get(args.target)  # an unknown name: one line with "did you mean"
        names = [args.target]
    reports = []
    for name in names:
        args.dataset = name
        overrides = dataset_overrides(args)
        preset = get_preset(args.preset).with_overrides(overrides)
        dataset = build_dataset(name, preset, overrides)
        check_scopes(
            {k: v for k, v in overrides.items() if k != "input"},
            {"dataset": [name, *dataset.member_names()]},
            "validate-dataset",
        )
        fs = args.fs or preset.input.fs
        window = int(round(fs * preset.input.window_s))
        label_set = args.label_set or dataset.label_sets[0]
        dataset.check_label_set(label_set)  # misuse: exit 2, not a failed check
        report = validate_dataset(dataset, fs, window, label_set, args.cache_dir or default_cache_root(), args.progress)
        print(render_dataset_report(report), end="\n\n", flush=True)
        reports.append(report)
    failed = [f"{r.dataset} ({', '.join(r.failed)})" for r in reports if not r.passed]
    print(f"{len(reports) - len(failed)}/{len(reports)} passed" + (f"; failed: {'; '.join(failed)}" if failed else ""))
    return 1 if failed else 0
