"""What the subcommands share: the one-line parser, the argument types, and the vocabulary.

One vocabulary across the subcommands: ``--results DIR`` is the results folder wherever a command
reads or writes one, ``--leaderboard FILE`` the leaderboard file, ``--to PATH`` the one file or
folder a command exports, ``--protocols`` a list of protocols. The older names (``--out`` for each
of these) still work for a release through :class:`Renamed`, with one warning line.
"""

from __future__ import annotations

import argparse
import inspect
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmark.config import ConfigError, parse_overrides
from benchmark.method.variant import split_names
from benchmark.registry import PluginError, Registry, load_plugin_file

EXIT_USAGE = 2
DEFAULT_RESULTS = Path("results")


class UsageError(Exception):
    pass


class OneLineParser(argparse.ArgumentParser):
    """argparse, but errors are one line (no usage dump) and exit with status 2."""

    def error(self, message: str):
        raise UsageError(message)


class Renamed(argparse.Action):
    """An option that has an old name too: both store into one destination; the old name works for
    a release and prints one warning line, and giving both names is refused (which one should win?)."""

    def __init__(self, option_strings: list[str], dest: str, deprecated: str = "", what: str = "", **kwargs: Any):
        super().__init__(option_strings, dest, **kwargs)
        self.deprecated = deprecated  # the new name when this option is the old one
        self.what = what

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        given = vars(namespace).setdefault(f"_given_{self.dest}", set())
        given.add(option_string)
        if len(given) > 1:
            name = self.deprecated or option_string
            raise UsageError(f"{' and '.join(sorted(given))} both name {self.what}; give {name} alone")
        if self.deprecated:
            print(f"warning: {option_string} is deprecated for {self.what}; use {self.deprecated}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_renamed(parser: argparse.ArgumentParser, name: str, old: str, what: str, help: str, **kwargs: Any) -> None:
    """``name`` and its deprecated ``old`` name, storing into the same destination; a required
    option is satisfied by either."""
    dest = name.lstrip("-").replace("-", "_")
    group = parser.add_mutually_exclusive_group(required=True) if kwargs.pop("required", False) else parser
    group.add_argument(name, action=Renamed, dest=dest, what=what, help=help, **kwargs)
    kwargs.pop("default", None)
    group.add_argument(
        old,
        action=Renamed,
        dest=dest,
        deprecated=name,
        what=what,
        default=argparse.SUPPRESS,
        help=f"deprecated name of {name}",
        **kwargs,
    )


def add_results(parser: argparse.ArgumentParser, help: str, old: str | None = None) -> None:
    """``--results DIR``, the results folder (default ``results``); ``old`` is a deprecated alias."""
    text = f"{help} (default: results)"
    if old is None:
        parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS, metavar="DIR", help=text)
    else:
        add_renamed(
            parser, "--results", old, "the results folder", text, type=Path, default=DEFAULT_RESULTS, metavar="DIR"
        )


def add_plugins(parser: argparse.ArgumentParser, help: str = "load a method/dataset plugin file (repeatable)") -> None:
    parser.add_argument("--plugin", dest="plugins", action="append", type=Path, default=[], help=help)


def load_plugins(paths: Sequence[Path]) -> None:
    for path in paths:
        load_plugin_file(path)


def registered_in_file(path: Path, registry: Registry, hint: str) -> list[str]:
    """The plugins of ``registry``'s kind that a plugin file registers (a file of the built-in
    methods/ or datasets/ folder is already loaded); none is an error ending in ``hint``."""
    resolved = path.resolve()
    builtin = [name for name, cls in registry if Path(inspect.getfile(cls)).resolve() == resolved]
    names = builtin or load_plugin_file(path)[registry.kind]
    if not names:
        raise PluginError(f"plugin file {path} registers no {registry.kind}; {hint}")
    return names


def add_overrides(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SCOPE.FIELD=VALUE", help=help)


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


def dataset_overrides(args: argparse.Namespace) -> dict[str, dict[str, str]]:
    """``--set`` values with ``--root`` as the dataset's ``root`` setting."""
    overrides = parse_overrides(args.overrides)
    if args.root is not None:
        overrides.setdefault(args.dataset, {})["root"] = str(args.root)
    return overrides


def default_leaderboard(results: Path) -> Path:
    """``LEADERBOARD.md`` for the committed ``results/`` folder, ``DIR.md`` beside any other results
    folder: a run into a scratch folder never overwrites the committed leaderboard."""
    if results.resolve() == DEFAULT_RESULTS.resolve():
        return Path("LEADERBOARD.md")
    results = results if results.name else results.resolve()
    return results.parent / f"{results.name}.md"
