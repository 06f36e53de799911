"""``python -m benchmark compare A B``: a paired comparison of two methods (A - B) with confidence
intervals and p-values per table and per label, from the results folder."""

from __future__ import annotations

import argparse

from benchmark.cli.common import UsageError, add_results, parse_names
from benchmark.data.contract import DataError
from benchmark.report.stats import StatsError


def register(sub: argparse._SubParsersAction) -> None:
    cmp = sub.add_parser("compare", help="paired comparison of two methods with p-values, from the results folder")
    cmp.set_defaults(handler=cmd_compare)
    cmp.add_argument("method_a", help="a method or variant, e.g. 'lamae[la_mask_ratio=0]'")
    cmp.add_argument("method_b", help="the reference the difference is taken to (A - B)")
    add_results(cmp, "results folder")
    cmp.add_argument("--dataset", default=None, help="only this dataset (default: every one)")
    cmp.add_argument("--labels", dest="label_set", default=None, help="only this label set (default: every one)")
    cmp.add_argument("--preset", default=None, help="only this preset (default: every one)")
    cmp.add_argument(
        "--protocols",
        "--protocol",
        dest="protocols",
        type=parse_names,
        default=None,
        help="only these protocols, comma-separated (default: every one)",
    )
    cmp.add_argument(
        "--point",
        "--variant",  # its earlier name; "variant" now names method variants only
        dest="point",
        default="",
        help="a sweep point, e.g. n10pct-s0 or leads-I+II (default: plain protocols)",
    )
    cmp.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")


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
    wanted = {"dataset": args.dataset, "label_set": args.label_set, "preset": args.preset}
    records = [
        r
        for r in stored
        if all(v is None or r["cell"][k] == v for k, v in wanted.items())
        and (args.protocols is None or r["cell"]["protocol"] in args.protocols)
        and r["cell"].get("variant", "") == args.point
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
