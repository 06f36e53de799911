"""``python -m benchmark new-method NAME``: write a documented template method plugin that passes
``validate``; :func:`write_template` writes ``new-dataset``'s too."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from benchmark.cli.common import UsageError, add_renamed
from benchmark.registry import METHODS, Registry


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


def write_template(
    name: str, path: Path, registry: Registry, render: Callable[[str, Path], str], what: str, check: str
) -> int:
    """Write ``render(name, path)`` to ``path``: refused (exit 2) when ``name`` is taken or
    ``path`` exists, so nothing is overwritten. ``what`` and ``check`` complete the message."""
    if name in registry:
        raise UsageError(
            f"a {registry.kind} named {name!r} already exists ({registry.origin(name)}); choose another name"
        )
    if path.exists():
        raise UsageError(f"{path} already exists; choose another --to or remove it")
    try:
        text = render(name, path)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(f"wrote {path}: {what}\nnext: python -m benchmark {check} {path}")
    return 0


def cmd_new_method(args: argparse.Namespace) -> int:
    from benchmark.run.template import default_template_path, render_template

    path = args.to or default_template_path(args.name)
    return write_template(
        args.name, path, METHODS, render_template, "a working per-lead MAE to turn into your method", "validate"
    )
