"""``python -m benchmark status``: a running or interrupted run, summarised from its results folder
alone (its run-state files, :mod:`benchmark.run.state`)."""

from __future__ import annotations

import argparse

from benchmark.cli.common import add_results
from benchmark.data.contract import DataError


def register(sub: argparse._SubParsersAction) -> None:
    state = sub.add_parser("status", help="summarise a running or interrupted run from its results folder alone")
    state.set_defaults(handler=cmd_status)
    add_results(state, "the run's results folder", old="--out")


def cmd_status(args: argparse.Namespace) -> int:
    from benchmark.run.state import status_report

    if not args.results.is_dir():
        raise DataError(f"results folder {args.results} does not exist; give the --results DIR of a run")
    print(status_report(args.results))
    return 0
