"""``python -m benchmark new-dataset NAME``: write a documented template dataset plugin that
passes ``validate-dataset`` (the template: :mod:`benchmark.run.dataset_template`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmark.cli.new_method import write_template
from benchmark.registry import DATASETS


def register(sub: argparse._SubParsersAction) -> None:
    new = sub.add_parser("new-dataset", help="write a documented template dataset plugin that passes validate-dataset")
    new.set_defaults(handler=cmd_new_dataset)
    new.add_argument("name", help="registry and module name: lower-case letters, digits and '_'")
    new.add_argument(
        "--to", type=Path, default=None, metavar="FILE", help="file to write (default: datasets/NAME.py in a checkout)"
    )


def cmd_new_dataset(args: argparse.Namespace) -> int:
    from benchmark.run.dataset_template import render_dataset_template
    from benchmark.run.template import default_template_path

    path = args.to or default_template_path(args.name, "datasets")
    what = "a working generated 12-lead dataset to turn into yours"
    return write_template(args.name, path, DATASETS, render_dataset_template, what, "validate-dataset")
