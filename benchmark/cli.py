"""Command line: ``python -m benchmark {run,status,prepare,list,leaderboard,compare,export,export-encoder,validate,new-method} ...``.

Bad input (unknown method, dataset, preset or protocol, malformed ``--seeds`` or ``--set``)
is reported on one line with the valid choices, exit status 2, and no traceback. ``validate``
exits with status 1 when a method breaks the contract.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import errno
import inspect
import logging
import sys
from pathlib import Path

from benchmark.config import ConfigError, parse_overrides
from benchmark.data.contract import DataError, default_cache_root
from benchmark.method.variant import split_names
from benchmark.registry import DATASETS, METHODS, PROTOCOLS, PluginError, load_plugin_file
from benchmark.report.export import FORMATS
from benchmark.report.stats import StatsError
from benchmark.run.results import StaleResultError
from benchmark.storage import DamagedFileError, ForeignFileError, claim_folder, ensure_writable, refuse_foreign
from benchmark.train import distributed
from benchmark.train.monitor import LOGGERS

EXIT_USAGE = 2
DEFAULT_RESULTS = Path("results")
# the options of one --launcher each: flag, type, launcher, help (LaunchConfig holds the defaults)
FAN_OUT_OPTIONS = (
    ("--jobs", int, "local", "processes at once (default 2)"),
    ("--partition", str, "slurm", "partition (default: the cluster's)"),
    ("--gpus-per-task", int, "slurm", "GPUs per task; more than one train with DDP (default 1)"),
    ("--cpus-per-task", int, "slurm", "CPU cores per task (default 8)"),
    ("--time", str, "slurm", "time limit per task, MINUTES or [D-]HH:MM:SS (default 24:00:00)"),
    ("--array-parallelism", int, "slurm", "tasks of the array running at once (default 32)"),
    ("--job-dir", Path, "slurm", "submitit's files and the task logs (default OUT/_jobs)"),
)


class UsageError(Exception):
    pass


class OneLineParser(argparse.ArgumentParser):
    """argparse, but errors are one line (no usage dump) and exit with status 2."""

    def error(self, message: str):
        raise UsageError(message)


def parse_learned_ratio(text: str) -> float:
    """``--learned-ratio 0.8``: a fraction in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value <= 1:  # NaN fails too
        raise argparse.ArgumentTypeError(
            f"--learned-ratio {text!r}: give a fraction in (0, 1] of the trivial predictor's loss, e.g. 0.8"
        )
    return value


LEARNED_RATIO_HELP = (
    "a pretraining run whose final loss is above this fraction of the best trivial predictor's loss on the "
    "same targets did not learn: shown apart, never ranked (default: the preset's, 0.8 for cpu and paper)"
)


def parse_budgets(text: str) -> list[str]:
    from benchmark.train.budget import parse_budget_points

    try:
        return parse_budget_points(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_seeds(text: str) -> list[int]:
    """``3`` -> seeds 0,1,2; ``0,4,7`` -> those seeds; ``2-5`` -> 2,3,4,5."""
    try:
        if "," in text:
            seeds = [int(s) for s in text.split(",") if s.strip()]
        elif "-" in text.strip("-"):
            first, last = (int(s) for s in text.split("-"))
            seeds = list(range(first, last + 1))
        else:
            seeds = list(range(int(text)))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--seeds {text!r}: give a count (3), a list (0,4,7) or a range (2-5)"
        ) from None
    if not seeds and text.strip() == "0":
        raise argparse.ArgumentTypeError(
            "--seeds 0 asks for zero seeds (a count); for seed 0 alone write --seeds 1 or 0-0"
        )
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"--seeds {text!r}: need at least one seed, all distinct and >= 0")
    return seeds


def parse_names(text: str) -> list[str]:
    """Comma-separated names; a method variant keeps the commas inside its brackets
    (``lamae,lamae[la_mask_ratio=0,la_depth=3]``)."""
    try:
        names = split_names(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not names:
        raise argparse.ArgumentTypeError("expected a comma-separated list of names")
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="python -m benchmark",
        description="ecgbench: pretrain and evaluate ECG encoders on matched compute, with honest statistics. "
        "Each command has its own --help; docs/command-line.md documents every one.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    run = sub.add_parser("run", help="pretrain and evaluate methods; results go to --out")
    run.add_argument(
        "--methods",
        type=parse_names,
        required=True,
        help="comma-separated method names, variants (lamae[la_mask_ratio=0]), ablation ladders (ladder:lamae) "
        "or 'all' (see the list command); external:PATH evaluates your own encoder (docs/methods-and-plugins.md, 'Evaluate your own encoder')",
    )
    run.add_argument("--dataset", default="synthetic", help="dataset name (default: synthetic)")
    run.add_argument("--labels", dest="label_set", default=None, help="label set (default: the dataset's first)")
    run.add_argument("--root", type=Path, default=None, help="dataset folder, for datasets read from disk")
    run.add_argument("--preset", default="cpu", help="smoke, cpu (default) or paper")
    run.add_argument("--seeds", type=parse_seeds, default=[0], help="count (3), list (0,4,7) or range (2-5)")
    run.add_argument("--protocols", type=parse_names, default=None, help="default: the preset's protocols")
    run.add_argument("--out", type=Path, default=DEFAULT_RESULTS, help="results folder (default: results)")
    run.add_argument(
        "--leaderboard",
        type=Path,
        default=None,
        help="leaderboard file regenerated from --out at the end (default: LEADERBOARD.md for results/, "
        "OUT.md beside any other --out)",
    )
    run.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SCOPE.FIELD=VALUE",
        help="override a setting, e.g. pretrain.steps=200, model.dim=96, linear.max_iter=100 (a method's own "
        "settings go in brackets: --methods 'lamae[la_mask_ratio=0.25]')",
    )
    run.add_argument(
        "--plugin",
        dest="plugins",
        action="append",
        type=Path,
        default=[],
        help="load a method/dataset plugin file (repeatable)",
    )
    run.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:1, ...")
    run.add_argument("--rerun", action="store_true", help="recompute cells that are already finished")
    run.add_argument("--learned-ratio", type=parse_learned_ratio, default=None, help=LEARNED_RATIO_HELP)
    run.add_argument(
        "--no-references",
        dest="add_references",
        action="store_false",
        help="do not add the random_init / scratch reference baselines",
    )
    run.add_argument("--cache-dir", type=Path, default=None, help=f"prepared data (default: {default_cache_root()})")
    run.add_argument("--no-progress", dest="progress", action="store_false", help="hide progress bars")
    run.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="DIR",
        help="trace the first pretraining epoch of every pretrained model with torch.profiler into "
        "DIR/<method>_seed<seed>/, a variant under its file name (lamae@la_mask_ratio=0_seed0/; Chrome trace + top "
        "operators)",
    )
    run.add_argument(
        "--budget",
        default=None,
        metavar="BUDGET",
        help="pretraining compute per method (= --set pretrain.budget=...): 'steps' (equal step counts), "
        "a method or variant (its FLOPs in pretrain.steps steps; presets: lamae), STEPS@METHOD (600@lamae) "
        "or a FLOP count (3.2e15, 120T)",
    )
    run.add_argument(
        "--budgets",
        type=parse_budgets,
        default=None,
        metavar="POINTS",
        help="a pretraining-budget sweep: the same run at each point, multiples of the preset's budget "
        "(0.25x,1x,4x) or FLOP counts (3e12,1.2e13), each into OUT/budget-POINT/; the leaderboard adds "
        "macro AUROC against pretraining FLOPs and whether the ranking holds at every budget",
    )
    run.add_argument(
        "--train-sizes",
        default=None,
        metavar="SIZES",
        help="label_efficiency training-set sizes, fractions or counts (e.g. 1%%,10%%,100%% or 50,200)",
    )
    run.add_argument("--subset-seeds", default=None, metavar="N", help="label_efficiency subsets drawn per size")
    run.add_argument(
        "--lead-sets",
        default=None,
        metavar="SETS",
        help="reduced_leads lead sets (e.g. all,limb,precordial,I+II,I,V1+V2+V5)",
    )
    run.add_argument(
        "--log",
        choices=LOGGERS,
        default=None,
        help="also write the scalars of every pretraining and fine-tuning run (loss, learning rate, throughput, "
        "gradient norm, validation metric) as TensorBoard event files under OUT/_tensorboard/ (needs the "
        "tensorboard package)",
    )
    run.add_argument(
        "--pretrain-data",
        type=parse_names,
        default=[],
        metavar="NAME[:ROOT],...",
        help="pretrain on these datasets' pretraining records instead of --dataset's pretrain split "
        "(list --dataset too to include it); val/test patients of --dataset are refused",
    )

    run.add_argument(
        "--duplicates",
        choices=("refuse", "drop"),
        default="refuse",
        help="pretraining or training records whose signal is a validation/test record of --dataset (same "
        "recording, any name): refuse (default, exit 2) or drop them and list them in OUT/duplicates-*.csv",
    )

    fan = run.add_argument_group("fan-out: several processes, one results folder (see docs/scaling-out.md)")
    fan.add_argument(
        "--shard",
        type=parse_shard,
        default=None,
        metavar="I/N",
        help="run only share I of N (from 0) of the pretrained models, for any scheduler or one per GPU; "
        "write the leaderboard afterwards with the leaderboard command",
    )
    fan.add_argument(
        "--launcher",
        default="none",
        help="none (default): this process runs everything; local: --jobs single-thread processes here; "
        "slurm: a SLURM job array through submitit (pip install 'ecgbench[cluster]')",
    )
    for flag, kind, launcher, text in FAN_OUT_OPTIONS:
        fan.add_argument(flag, type=kind, default=None, help=f"{launcher}: {text}")

    state = sub.add_parser("status", help="summarise a running or interrupted run from its results folder alone")
    state.add_argument("--out", type=Path, default=Path("results"), help="the run's results folder (default: results)")

    prep = sub.add_parser("prepare", help="read, check and cache a dataset once (run does it automatically)")
    prep.add_argument("--dataset", required=True, help="dataset name (see the list command)")
    prep.add_argument("--root", type=Path, default=None, help="dataset folder")
    prep.add_argument("--fs", type=int, default=None, help="sampling rate to prepare, Hz (default: the preset's)")
    prep.add_argument("--preset", default="cpu", help="preset whose sampling rate is the default (default: cpu)")
    prep.add_argument("--labels", dest="label_set", default=None, help="label set (default: the dataset's first)")
    prep.add_argument("--workers", type=int, default=None, help="parallel processes (default: all available cores)")
    prep.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SCOPE.FIELD=VALUE",
        help="dataset setting, e.g. ptbxl.preprocess.bandpass_hz=0.67,40",
    )
    prep.add_argument("--plugin", dest="plugins", action="append", type=Path, default=[])
    prep.add_argument("--cache-dir", type=Path, default=None, help=f"prepared data (default: {default_cache_root()})")
    prep.add_argument("--no-progress", dest="progress", action="store_false", help="hide progress bars")

    lst = sub.add_parser("list", help="list methods, datasets, protocols and presets")
    lst.add_argument("--plugin", dest="plugins", action="append", type=Path, default=[])

    board = sub.add_parser("leaderboard", help="regenerate LEADERBOARD.md from the results folder only")
    board.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="results folder (default: results)")
    board.add_argument(
        "--out",
        type=Path,
        default=None,
        help="leaderboard file (default: LEADERBOARD.md for results/, DIR.md beside any other --results DIR)",
    )
    board.add_argument("--learned-ratio", type=parse_learned_ratio, default=None, help=LEARNED_RATIO_HELP)

    cmp = sub.add_parser("compare", help="paired comparison of two methods with p-values, from the results folder")
    cmp.add_argument("method_a", help="a method or variant, e.g. 'lamae[la_mask_ratio=0]'")
    cmp.add_argument("method_b", help="the reference the difference is taken to (A - B)")
    cmp.add_argument("--results", type=Path, default=Path("results"))
    cmp.add_argument("--dataset", default=None)
    cmp.add_argument("--labels", dest="label_set", default=None)
    cmp.add_argument("--preset", default=None)
    cmp.add_argument("--protocol", default=None)
    cmp.add_argument(
        "--point",
        "--variant",  # its earlier name; "variant" now names method variants only
        dest="point",
        default="",
        help="a sweep point, e.g. n10pct-s0 or leads-I+II (default: plain protocols)",
    )
    cmp.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")

    export = sub.add_parser("export", help="all results as one CSV or Parquet table, one row per cell (for pandas)")
    export.add_argument("--results", type=Path, default=Path("results"), help="results folder (default: results)")
    export.add_argument("--format", dest="fmt", choices=FORMATS, default="csv", help="csv (default) or parquet")
    export.add_argument("--out", type=Path, required=True, help="file to write")
    export.add_argument(
        "--per-label", action="store_true", help="one row per cell and label, with that label's AUROC and AUPRC"
    )

    encoder = sub.add_parser(
        "export-encoder", help="write a pretrained encoder as safetensors + config.json (ecgbench.load_encoder)"
    )
    encoder.add_argument("source", type=Path, help="a result file (.json) or a pretraining checkpoint folder")
    encoder.add_argument("--out", type=Path, required=True, help="folder to write model.safetensors and config.json to")
    encoder.add_argument("--plugin", dest="plugins", action="append", type=Path, default=[])

    check = sub.add_parser("validate", help="check that methods meet the plugin contract (exit 1 if not)")
    check.add_argument(
        "target",
        help="a method name or variant (lamae[la_tokens=patch]), an ablation ladder (ladder:lamae), 'all', "
        "or a plugin .py file (every method it registers)",
    )
    check.add_argument(
        "--preset",
        dest="presets",
        type=parse_names,
        default=["smoke", "cpu"],
        help="presets whose input and model size to check (default smoke,cpu; "
        "paper runs all checks but the overfit at batch 1)",
    )
    check.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SCOPE.FIELD=VALUE",
        help="override a preset setting, e.g. model.dim=96 (a method's own settings go in brackets: "
        "validate 'lamae_e[reading=alpha_la_0]')",
    )
    check.add_argument(
        "--plugin",
        dest="plugins",
        action="append",
        type=Path,
        default=[],
        help="load another plugin file first (repeatable)",
    )

    new = sub.add_parser("new-method", help="write a documented template method plugin that passes validate")
    new.add_argument("name", help="registry and module name: lower-case letters, digits and '_'")
    new.add_argument("--out", type=Path, default=None, help="file to write (default: methods/NAME.py in a checkout)")
    return parser


def parse_shard(text: str):
    from benchmark.config import ConfigError
    from benchmark.run.units import Shard

    try:
        return Shard.parse(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def launch_config(args: argparse.Namespace):
    """``--launcher`` and the options given for it; an option of another launcher is refused."""
    from benchmark.run.launch import LaunchConfig

    given = {}
    for flag, _, launcher, _ in FAN_OUT_OPTIONS:
        field = flag[2:].replace("-", "_")
        if getattr(args, field) is None:
            continue
        if args.launcher != launcher:
            raise UsageError(f"{flag} applies to --launcher {launcher}, not --launcher {args.launcher}")
        given[field] = getattr(args, field)
    return LaunchConfig(args.launcher, **given)


def default_leaderboard(results: Path) -> Path:
    """``LEADERBOARD.md`` for the committed ``results/`` folder, ``OUT.md`` beside any other results
    folder: a run into a scratch folder never overwrites the committed leaderboard."""
    if results.resolve() == DEFAULT_RESULTS.resolve():
        return Path("LEADERBOARD.md")
    results = results if results.name else results.resolve()
    return results.parent / f"{results.name}.md"


def cmd_run(args: argparse.Namespace) -> int:
    from benchmark.report.leaderboard import check_target, summary_table, write_leaderboard
    from benchmark.run.launch import LaunchError, launch
    from benchmark.run.presets import get_preset
    from benchmark.run.results import ResultStore
    from benchmark.run.runner import RunRequest, run, tensorboard_hint
    from benchmark.train.budget import budget_at
    from benchmark.train.runtime import resolve_device

    fan_out = launch_config(args)
    if args.shard is not None and args.leaderboard is not None:
        raise UsageError(
            "--leaderboard with --shard: a shard writes no leaderboard; after all shards run "
            "`python -m benchmark leaderboard --results OUT --out FILE`"
        )
    board = args.leaderboard or default_leaderboard(args.out)
    for folder in (args.out, args.cache_dir or default_cache_root(), board.parent):
        ensure_writable(folder)  # fail in a second, not after the data are prepared
    if args.shard is None:
        check_target(board)  # a user's own file of that name: refused now, not after the run
    if args.profile is not None:
        claim_folder(args.profile, "--profile DIR", "torch.profiler traces of `python -m benchmark run --profile`")
    overrides = dataset_overrides(args)
    for value, scope, name in (
        (args.budget, "pretrain", "budget"),
        (args.train_sizes, "label_efficiency", "sizes"),
        (args.subset_seeds, "label_efficiency", "subset_seeds"),
        (args.lead_sets, "reduced_leads", "lead_sets"),
    ):
        if value is not None:
            overrides.setdefault(scope, {})[name] = value
    points = [(None, args.out, overrides)]  # (budget point, results folder, settings) of each run
    if args.budgets is not None:
        if args.budget is not None:
            raise UsageError("--budget with --budgets: give the sweep's points in --budgets alone")
        pretrain = get_preset(args.preset).with_overrides(overrides).pretrain
        points = []
        for point in args.budgets:
            budget, steps = budget_at(point, pretrain.budget, pretrain.steps)
            settings = {scope: dict(values) for scope, values in overrides.items()}
            settings.setdefault("pretrain", {}).update(budget=budget, steps=str(steps))
            points.append((point, args.out / f"budget-{point}", settings))
    request = RunRequest(
        methods=args.methods,
        dataset=args.dataset,
        label_set=args.label_set,
        preset=args.preset,
        seeds=args.seeds,
        protocols=args.protocols,
        out=args.out,
        overrides=overrides,
        plugins=args.plugins,
        device=args.device,
        rerun=args.rerun,
        add_references=args.add_references,
        progress=args.progress,
        cache_root=args.cache_dir or default_cache_root(),
        profile_dir=args.profile,
        pretrain_data=args.pretrain_data,
        log=args.log,
        duplicates=args.duplicates,
        shard=args.shard,
    )
    failed = None
    started = dt.datetime.now(dt.UTC)
    records, writes_outputs = [], True
    try:
        for point, out, settings in points:
            if point is not None:
                print(f"\n== pretraining budget {point}: {settings['pretrain']['budget']} -> {out}/", flush=True)
            one = dataclasses.replace(request, out=out, overrides=settings)
            if fan_out.launcher == "none":
                with distributed.session(resolve_device(args.device)) as device:
                    records += run(dataclasses.replace(one, device=str(device)))
                    writes_outputs = distributed.is_main()
            else:
                try:
                    records += launch(one, fan_out)
                except LaunchError as exc:
                    records, failed = records + exc.records, exc
                    break
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: finished cells are saved under {args.out}/ and pretraining resumes from its last "
            f"checkpoint; run the same command again to continue",
            file=sys.stderr,
        )
        return 130
    if not writes_outputs:
        return 0
    print()
    print(summary_table(records, ResultStore(args.out), learned=args.learned_ratio))
    print(f"\n{what_was_run(records, started)}")
    if args.shard is not None:
        print(
            f"\nshard {args.shard.index}/{args.shard.count} done; {len(records)} cells of this run are finished in "
            f"{args.out}/. When every shard is done: python -m benchmark leaderboard --results {args.out}"
        )
    else:
        n = write_leaderboard(args.out, board, learned=args.learned_ratio)
        print(f"\n{len(records)} cells in this run; {board} regenerated from {n} results in {args.out}/")
    if args.log == "tensorboard":
        print(tensorboard_hint(args.out))
    if failed is not None:
        print(f"error: {failed}", file=sys.stderr)
        return 1
    return 0


def what_was_run(records: list[dict], started: dt.datetime) -> str:
    """Which of a run's cells it computed and which it found finished (and where those were
    computed): results of other hardware differ by a few thousandths (README, Quick start)."""
    since = started.replace(microsecond=0)  # finished_at is written to the second
    found = [r for r in records if dt.datetime.fromisoformat(r["provenance"]["finished_at"]) < since]
    line = f"{len(records) - len(found)} cells computed now, {len(found)} found finished"
    if not found:
        return line
    devices = sorted({r["provenance"]["device"] for r in found})
    commits = sorted({(r["provenance"]["git"]["commit"] or "unknown")[:7] for r in found})
    return (
        f"{line} (computed earlier on {'; '.join(devices)}, code {', '.join(commits)}; results of other hardware "
        f"or torch builds differ by about ±0.003 macro AUROC: README, Quick start). --rerun or a new --out "
        f"computes them here."
    )


def dataset_overrides(args: argparse.Namespace) -> dict[str, dict[str, str]]:
    """``--set`` values with ``--root`` as the dataset's ``root`` setting."""
    overrides = parse_overrides(args.overrides)
    if args.root is not None:
        overrides.setdefault(args.dataset, {})["root"] = str(args.root)
    return overrides


def cmd_status(args: argparse.Namespace) -> int:
    from benchmark.run.state import status_report

    if not args.out.is_dir():
        raise DataError(f"results folder {args.out} does not exist; give the --out of a run")
    print(status_report(args.out))
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from benchmark.data.files import PreparedDataset, coverage_lines
    from benchmark.run.build import build_dataset, check_scopes
    from benchmark.run.presets import get_preset

    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be >= 1, got {args.workers}")
    for path in args.plugins:
        load_plugin_file(path)
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


def cmd_list(args: argparse.Namespace) -> int:
    from benchmark.run.ladder import LADDER_PREFIX, LADDERS
    from benchmark.run.presets import PRESETS

    for path in args.plugins:
        load_plugin_file(path)
    for title, registry in (("methods", METHODS), ("datasets", DATASETS), ("protocols", PROTOCOLS)):
        print(f"{title}:")
        for name, cls in registry:
            extra = f"  [label sets: {', '.join(cls.label_sets)}]" if registry is DATASETS else ""
            print(f"  {name:<14} {cls.summary}{extra}")
        for broken in registry.broken:
            print(f"  (failed to load {broken.source}: {broken.error})")
    print("ablation ladders (--methods ladder:NAME, one table of paired tests in the leaderboard):")
    for anchor, rungs in LADDERS.items():
        print(f"  {LADDER_PREFIX + anchor:<14} " + "; ".join(rung.label for rung in rungs))
    print("presets:")
    for name, preset in PRESETS.items():
        print(f"  {name:<14} {preset.description}")
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from benchmark.report.leaderboard import write_leaderboard

    if not args.results.is_dir():
        raise DataError(f"results folder {args.results} does not exist; run `python -m benchmark run` first")
    board = args.out or default_leaderboard(args.results)
    n = write_leaderboard(args.results, board, "--out FILE", learned=args.learned_ratio)
    print(f"{board} regenerated from {n} results in {args.results}/")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from benchmark.report.comparison import TableStats, comparable_tables, format_comparison
    from benchmark.run.build import resolve_method
    from benchmark.run.results import ResultStore

    if not args.results.is_dir():
        raise DataError(f"results folder {args.results} does not exist; run `python -m benchmark run` first")
    if args.resamples < 1:
        raise UsageError(f"--resamples must be >= 1, got {args.resamples}")
    store = ResultStore(args.results)
    stored = list(store.records())
    present_methods = {r["cell"]["method"] for r in stored}

    def canonical(name: str) -> str:
        """A method's canonical name; an external encoder's results name it as registered by the
        run (``my_cnn-1f723d8c``), which this process need not have read."""
        if name in present_methods:
            return name
        return resolve_method(name).name

    method_a, method_b = canonical(args.method_a), canonical(args.method_b)
    wanted = {"dataset": args.dataset, "label_set": args.label_set, "preset": args.preset, "protocol": args.protocol}
    records = [
        r
        for r in stored
        if all(v is None or r["cell"][k] == v for k, v in wanted.items()) and r["cell"].get("variant", "") == args.point
    ]
    tables = [t for t in comparable_tables(records) if method_a in t.by_method and method_b in t.by_method]
    if not tables:
        present = sorted({r["cell"]["method"] for r in records})
        raise DataError(
            f"no comparable results of both {method_a} and {method_b} in {args.results} "
            f"with these filters (methods present: {', '.join(present) or 'none'})"
        )
    for table in tables:
        try:
            table_stats = TableStats(table, store, args.resamples)
        except StatsError as exc:
            raise DataError(f"{table.dataset} / {table.label_set} / {table.protocol}: {exc}") from None
        print(format_comparison(table_stats, method_a, method_b))
        print()
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from benchmark.report.export import is_export, results_frame, write_frame

    refuse_foreign(args.out, is_export(args.out), "--out FILE")
    if not args.results.is_dir():
        raise DataError(f"results folder {args.results} does not exist; run `python -m benchmark run` first")
    frame = results_frame(args.results, args.per_label)
    if frame.empty:
        raise DataError(f"{args.results} holds no results to export")
    write_frame(frame, args.out, args.fmt)
    print(f"wrote {args.out}: {len(frame)} rows x {len(frame.columns)} columns from {args.results}/")
    return 0


def cmd_export_encoder(args: argparse.Namespace) -> int:
    from benchmark.method.exported import CONFIG, WEIGHTS
    from benchmark.run.export import export_encoder

    for path in args.plugins:
        load_plugin_file(path)
    config = export_encoder(args.source, args.out)
    report, data = config["pretraining"]["report"], config["pretraining"]["dataset"]
    weights = f"pretrained {report['steps']} steps on {data}" if report else config["weights"]
    print(
        f"wrote {args.out / WEIGHTS} and {args.out / CONFIG}: {config['method']}, seed {config['pretraining']['seed']}, "
        f"{weights}; input {config['input']['window_s']:g} s at {config['input']['fs']} Hz, "
        f"{config['feature_dim']} features\n"
        f"use it: encoder = ecgbench.load_encoder({str(args.out)!r}); features = encoder(signals, lead_mask)"
    )
    return 0


def _methods_in_file(path: Path) -> list[str]:
    """Methods a plugin file registers; a file of the built-in methods/ folder is already loaded."""
    resolved = path.resolve()
    builtin = [name for name, cls in METHODS if Path(inspect.getfile(cls)).resolve() == resolved]
    return builtin or load_plugin_file(path)["method"]


def cmd_validate(args: argparse.Namespace) -> int:
    from benchmark.method.external_source import EXTERNAL_PREFIX
    from benchmark.method.variant import MethodVariant
    from benchmark.run.build import check_scopes, encoder_params, ladder_methods, resolve_method
    from benchmark.run.ladder import LADDER_PREFIX
    from benchmark.run.presets import ANCHOR_METHOD, get_preset
    from benchmark.run.validate import render_report, render_summary, validate_method

    for path in args.plugins:
        load_plugin_file(path)
    overrides = parse_overrides(args.overrides)
    presets = [get_preset(name).with_overrides(overrides) for name in args.presets]
    target = Path(args.target)
    per_preset: dict[str, list[str] | list[MethodVariant]]
    if target.suffix == ".py" and not args.target.startswith(EXTERNAL_PREFIX):
        names = _methods_in_file(target)
        if not names:
            raise PluginError(
                f"plugin file {target} registers no method; decorate its Method subclass with "
                "@METHODS.register('name') (from ecgbench import METHODS)"
            )
        per_preset = {preset.name: names for preset in presets}
    elif args.target == "all":
        per_preset = {preset.name: METHODS.names() for preset in presets}
    elif args.target.startswith(LADDER_PREFIX):  # a ladder's matched widths depend on the preset
        per_preset = {preset.name: ladder_methods(args.target, preset) for preset in presets}
    else:
        per_preset = {preset.name: [resolve_method(args.target)] for preset in presets}  # "did you mean"
    check_scopes(overrides, {}, "validation")  # the preset's own scopes only: a method's settings go in brackets
    reference = ANCHOR_METHOD
    reports, reference_params = [], {}
    for preset in presets:
        if reference in METHODS:
            reference_params[preset.name] = encoder_params(reference, preset)
        for method in per_preset[preset.name]:
            report = validate_method(method, preset, light=preset.name == "paper")
            print(render_report(report), end="\n\n", flush=True)
            reports.append(report)
    print(render_summary(reports, reference_params, reference))
    failed = [f"{r.method} ({r.preset})" for r in reports if not r.passed]
    print(
        f"\n{len(reports) - len(failed)}/{len(reports)} passed" + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


def cmd_new_method(args: argparse.Namespace) -> int:
    from benchmark.run.template import default_template_path, render_template

    path = args.out or default_template_path(args.name)
    if args.name in METHODS:
        raise UsageError(
            f"a method named {args.name!r} already exists ({METHODS.origin(args.name)}); choose another name"
        )
    if path.exists():
        raise UsageError(f"{path} already exists; choose another --out or remove it")
    try:
        text = render_template(args.name, path)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(f"wrote {path}: a working per-lead MAE to turn into your method\nnext: python -m benchmark validate {path}")
    return 0


COMMANDS = {
    "run": cmd_run,
    "status": cmd_status,
    "prepare": cmd_prepare,
    "list": cmd_list,
    "leaderboard": cmd_leaderboard,
    "compare": cmd_compare,
    "export": cmd_export,
    "export-encoder": cmd_export_encoder,
    "validate": cmd_validate,
    "new-method": cmd_new_method,
}


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="[benchmark] %(message)s", stream=sys.stderr)
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except (
        UsageError,
        PluginError,
        ConfigError,
        DataError,
        StaleResultError,
        DamagedFileError,
        ForeignFileError,
    ) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # the environment: a read-only or full disk, a file where a folder should be
        print(f"error: {describe_os_error(exc)}", file=sys.stderr)
        return EXIT_USAGE


def describe_os_error(exc: OSError) -> str:
    """One line naming the path and the likely fix."""
    where = exc.filename or "a file"
    reason = exc.strerror or type(exc).__name__
    if isinstance(exc, PermissionError) or exc.errno == errno.EROFS:
        fix = "make it writable, or choose another folder (--out, --cache-dir / $ECGBENCH_CACHE, --leaderboard)"
    elif exc.errno == errno.ENOSPC:
        fix = "free disk space or choose a folder on another disk (--out, --cache-dir)"
    elif isinstance(exc, (NotADirectoryError, FileExistsError)):
        fix = "a file stands where a folder is needed; remove it or choose another path"
    else:
        fix = "check the path and its permissions"
    return f"{where}: {reason}; {fix}"
