"""``python -m benchmark run``: pretrain and evaluate methods into a results folder, then
regenerate its leaderboard. Its options may also come from a TOML file (``--config``,
:mod:`benchmark.cli.run_config`)."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import sys
from pathlib import Path

from benchmark.cli.common import (
    LEARNED_RATIO_HELP,
    UsageError,
    add_overrides,
    add_plugins,
    add_results,
    dataset_overrides,
    default_leaderboard,
    parse_learned_ratio,
    parse_names,
    parse_seeds,
)
from benchmark.cli.run_config import CONFIG_FLAG, ConfigFlag
from benchmark.data.contract import default_cache_root
from benchmark.nn import distributed
from benchmark.nn.monitor import LOGGERS
from benchmark.storage import claim_folder, ensure_writable

# the options of one --launcher each: flag, type, launcher, help (LaunchConfig holds the defaults)
FAN_OUT_OPTIONS = (
    ("--jobs", int, "local", "processes at once (default 2)"),
    ("--partition", str, "slurm", "partition (default: the cluster's)"),
    ("--gpus-per-task", int, "slurm", "GPUs per task; more than one train with DDP (default 1)"),
    ("--cpus-per-task", int, "slurm", "CPU cores per task (default 8)"),
    ("--time", str, "slurm", "time limit per task, MINUTES or [D-]HH:MM:SS (default 24:00:00)"),
    ("--array-parallelism", int, "slurm", "tasks of the array running at once (default 32)"),
    ("--job-dir", Path, "slurm", "submitit's files and the task logs (default DIR/_jobs of --results DIR)"),
)


def parse_budgets(text: str) -> list[str]:
    from benchmark.train.budget import parse_budget_points

    try:
        return parse_budget_points(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


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


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    run = sub.add_parser("run", help="pretrain and evaluate methods; results go to --results")
    run.set_defaults(handler=cmd_run)
    run.add_argument(
        CONFIG_FLAG,
        action=ConfigFlag,
        metavar="FILE",
        help="a TOML file of run's options (methods, dataset, seeds, results, set, ...); the command line's "
        "flags override it (docs/command-line.md, 'A run in a file')",
    )
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
    add_results(run, "results folder", old="--out")
    run.add_argument(
        "--leaderboard",
        type=Path,
        default=None,
        metavar="FILE",
        help="leaderboard file regenerated from --results at the end (default: LEADERBOARD.md for results/, "
        "DIR.md beside any other --results DIR)",
    )
    add_overrides(
        run,
        "override a setting, e.g. pretrain.steps=200, model.dim=96, linear.max_iter=100 (a method's own "
        "settings go in brackets: --methods 'lamae[la_mask_ratio=0.25]')",
    )
    add_plugins(run)
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
        "(0.25x,1x,4x) or FLOP counts (3e12,1.2e13), each into DIR/budget-POINT/; the leaderboard adds "
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
        "gradient norm, validation metric) as TensorBoard event files under DIR/_tensorboard/ (needs the "
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
        "recording, any name): refuse (default, exit 2) or drop them and list them in DIR/duplicates-*.csv",
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
    return run


def cmd_run(args: argparse.Namespace) -> int:
    from benchmark.report.leaderboard import check_target, summary_table, write_leaderboard
    from benchmark.run.launch import LaunchError, launch
    from benchmark.run.presets import get_preset
    from benchmark.run.results import ResultStore
    from benchmark.run.runner import run, tensorboard_hint
    from benchmark.train.budget import budget_at
    from benchmark.train.runtime import resolve_device

    fan_out = launch_config(args)
    if args.shard is not None and args.leaderboard is not None:
        raise UsageError(
            "--leaderboard with --shard: a shard writes no leaderboard; after all shards run "
            "`python -m benchmark leaderboard --results DIR --leaderboard FILE`"
        )
    board = args.leaderboard or default_leaderboard(args.results)
    for folder in (args.results, args.cache_dir or default_cache_root(), board.parent):
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
    points = [(None, args.results, overrides)]  # (budget point, results folder, settings) of each run
    if args.budgets is not None:
        if args.budget is not None:
            raise UsageError("--budget with --budgets: give the sweep's points in --budgets alone")
        pretrain = get_preset(args.preset).with_overrides(overrides).pretrain
        points = []
        for point in args.budgets:
            budget, steps = budget_at(point, pretrain.budget, pretrain.steps)
            settings = {scope: dict(values) for scope, values in overrides.items()}
            settings.setdefault("pretrain", {}).update(budget=budget, steps=str(steps))
            points.append((point, args.results / f"budget-{point}", settings))
    request = run_request(args, overrides)
    failed = None
    started = dt.datetime.now(dt.UTC)
    records, writes_outputs = [], True
    try:
        for point, folder, settings in points:
            if point is not None:
                print(f"\n== pretraining budget {point}: {settings['pretrain']['budget']} -> {folder}/", flush=True)
            one = dataclasses.replace(request, results=folder, overrides=settings)
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
            f"\ninterrupted: finished cells are saved under {args.results}/ and pretraining resumes from its last "
            f"checkpoint; run the same command again to continue",
            file=sys.stderr,
        )
        return 130
    if not writes_outputs:
        return 0
    print()
    print(summary_table(records, ResultStore(args.results), learned=args.learned_ratio))
    print(f"\n{what_was_run(records, started)}")
    if args.shard is not None:
        print(
            f"\nshard {args.shard.index}/{args.shard.count} done; {len(records)} cells of this run are finished in "
            f"{args.results}/. When every shard is done: python -m benchmark leaderboard --results {args.results}"
        )
    else:
        n = write_leaderboard(args.results, board, learned=args.learned_ratio)
        print(f"\n{len(records)} cells in this run; {board} regenerated from {n} results in {args.results}/")
    if args.log == "tensorboard":
        print(tensorboard_hint(args.results))
    if failed is not None:
        print(f"error: {failed}", file=sys.stderr)
        return 1
    return 0


# RunRequest's fields no flag holds: the settings --set and the shorthand flags give together, the
# cache folder (its default is computed), and the units a launcher hands one task
NOT_FLAGS = ("overrides", "cache_dir", "units")


def run_request(args: argparse.Namespace, overrides: dict[str, dict[str, str]]):
    """The run the flags ask for: every field of :class:`RunRequest` is the flag of its name
    (``--results`` -> ``results``; a new field without its flag fails every run at once), but
    :data:`NOT_FLAGS`."""
    from benchmark.run.runner import RunRequest

    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(RunRequest) if f.name not in NOT_FLAGS}
    return RunRequest(**given, overrides=overrides, cache_dir=args.cache_dir or default_cache_root())


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
        f"or torch builds differ by about ±0.003 macro AUROC: README, Quick start). --rerun or a new --results "
        f"computes them here."
    )
