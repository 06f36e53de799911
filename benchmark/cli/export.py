"""``python -m benchmark export``: every result as one CSV or Parquet table, one row per cell
(or per cell and label), for pandas."""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmark.cli.common import add_renamed, add_results
from benchmark.data.contract import DataError
from benchmark.report.export import FORMATS
from benchmark.storage import refuse_foreign


def register(sub: argparse._SubParsersAction) -> None:
    export = sub.add_parser("export", help="all results as one CSV or Parquet table, one row per cell (for pandas)")
    export.set_defaults(handler=cmd_export)
    add_results(export, "results folder")
    export.add_argument("--format", dest="fmt", choices=FORMATS, default="csv", help="csv (default) or parquet")
    add_renamed(
        export, "--to", "--out", "export's table file", "file to write", type=Path, required=True, metavar="FILE"
    )
    export.add_argument(
        "--per-label", action="store_true", help="one row per cell and label, with that label's AUROC and AUPRC"
    )


def cmd_export(args: argparse.Namespace) -> int:
    from benchmark.report.export import is_export, results_frame, write_frame

    refuse_foreign(args.to, is_export(args.to), "--to FILE")
    if not args.results.is_dir():
        raise DataError(f"results folder {args.results} does not exist; run `python -m benchmark run` first")
    frame = results_frame(args.results, args.per_label)
    if frame.empty:
        raise DataError(f"{args.results} holds no results to export")
    write_frame(frame, args.to, args.fmt)
    print(f"wrote {args.to}: {len(frame)} rows x {len(frame.columns)} columns from {args.results}/")
    return 0
