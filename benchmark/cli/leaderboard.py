"""``python -m benchmark leaderboard``: regenerate a leaderboard file from a results folder only."""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmark.cli.common import LEARNED_RATIO_HELP, add_renamed, add_results, default_leaderboard, parse_learned_ratio
from benchmark.data.contract import DataError


def register(sub: argparse._SubParsersAction) -> None:
    board = sub.add_parser("leaderboard", help="regenerate LEADERBOARD.md from the results folder only")
    board.set_defaults(handler=cmd_leaderboard)
    add_results(board, "results folder")
    add_renamed(
        board,
        "--leaderboard",
        "--out",
        "the leaderboard file",
        "leaderboard file (default: LEADERBOARD.md for results/, DIR.md beside any other --results DIR)",
        type=Path,
        default=None,
        metavar="FILE",
    )
    board.add_argument("--learned-ratio", type=parse_learned_ratio, default=None, help=LEARNED_RATIO_HELP)


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from benchmark.report.leaderboard import write_leaderboard

    if not args.results.is_dir():
        raise DataError(f"results folder {args.results} does not exist; run `python -m benchmark run` first")
    board = args.leaderboard or default_leaderboard(args.results)
    n = write_leaderboard(args.results, board, "--leaderboard FILE", learned=args.learned_ratio)
    print(f"{board} regenerated from {n} results in {args.results}/")
    return 0
