"""Command line: ``python -m benchmark {run,status,prepare,list,leaderboard,compare,export,export-encoder,validate,validate-dataset,new-method,new-dataset} ...``,
one module per subcommand (its options and its command; ``list`` is :mod:`benchmark.cli.listing`,
not to shadow the builtin), assembled here.

One vocabulary (:mod:`benchmark.cli.common`): ``--results DIR`` is the results folder of every
command, ``--leaderboard FILE`` the leaderboard file, ``--to PATH`` what ``export``,
``export-encoder``, ``new-method`` and ``new-dataset`` write, ``--protocols`` a list of protocols; the old ``--out``
still works for a release with a warning. Bad input (unknown method, dataset, preset or protocol,
malformed ``--seeds`` or ``--set``, an unknown key in ``run --config``) is reported on one line
with the valid choices, exit status 2, and no traceback. ``validate`` and ``validate-dataset`` exit with
status 1 when a method or dataset breaks its contract.
"""

from __future__ import annotations

import argparse
import errno
import logging
import sys

from benchmark.cli import (
    compare,
    export,
    export_encoder,
    leaderboard,
    listing,
    new_dataset,
    new_method,
    prepare,
    run,
    status,
    validate,
    validate_dataset,
)
from benchmark.cli.common import EXIT_USAGE, OneLineParser, UsageError
from benchmark.cli.run_config import expand_config
from benchmark.config import ConfigError
from benchmark.data.contract import DataError
from benchmark.registry import PluginError
from benchmark.run.results import StaleResultError
from benchmark.storage import DamagedFileError, ForeignFileError


def build_parser() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The parser of every subcommand, and ``run``'s own (whose options a ``--config`` file holds)."""
    parser = OneLineParser(
        prog="python -m benchmark",
        description="ecgbench: pretrain and evaluate ECG encoders on matched compute, with honest statistics. "
        "Each command has its own --help; docs/command-line.md documents every one.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    run_parser = run.register(sub)
    for command in (
        status,
        prepare,
        listing,
        leaderboard,
        compare,
        export,
        export_encoder,
        validate,
        validate_dataset,
        new_method,
        new_dataset,
    ):
        command.register(sub)
    return parser, run_parser


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line, with ``run --config FILE``'s flags placed before the command line's."""
    parser, run_parser = build_parser()
    if argv[:1] == ["run"]:
        argv = expand_config(list(argv), run_parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="[benchmark] %(message)s", stream=sys.stderr)
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
        return args.handler(args)
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
        fix = "make it writable, or choose another folder (--results, --cache-dir / $ECGBENCH_CACHE, --leaderboard)"
    elif exc.errno == errno.ENOSPC:
        fix = "free disk space or choose a folder on another disk (--results, --cache-dir)"
    elif isinstance(exc, (NotADirectoryError, FileExistsError)):
        fix = "a file stands where a folder is needed; remove it or choose another path"
    else:
        fix = "check the path and its permissions"
    return f"{where}: {reason}; {fix}"
