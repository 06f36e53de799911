"""``python -m benchmark new-method NAME``: write a documented template method plugin that passes
``validate``."""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmark.cli.common import UsageError, add_renamed
from benchmark.registry import METHODS


def register(sub: argparse._SubParsersAction) -> None:
    new = sub.add_parser("new-method", help="write a documented template method plugin that passes validate")
    new.set_defaults(handler=cmd_new_method)
    new.add_argument("name", help="registry and module name: lower-case letters, digits and '_'")
    add_renamed(
        new,
        "--to",
        "--out",
        "new-method's file",
        "file to write (default: methods/NAME.py in a checkout)",
        type=Path,
        default=None,
        metavar="FILE",
    )


def cmd_new_method(args: argparse.Namespace) -> int:
    from benchmark.run.template import default_template_path, render_template

    path = args.to or default_template_path(args.name)
    if args.name in METHODS:
        raise UsageError(
            f"a method named {args.name!r} already exists ({METHODS.origin(args.name)}); choose another name"
        )
    if path.exists():
        raise UsageError(f"{path} already exists; choose another --to or remove it")
    try:
        text = render_template(args.name, path)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(f"wrote {path}: a working per-lead MAE to turn into your method\nnext: python -m benchmark validate {path}")
    return 0
