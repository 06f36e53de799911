"""``run --config run.toml``: a run's options in a TOML file.

A key is a ``run`` option's name without its dashes (``methods``, ``dataset``, ``labels``,
``preset``, ``seeds``, ``protocols``, ``results``, ``set``, ``no-progress``, ...), a value what
the flag takes: a string or number, a list for a comma-separated option (``methods = ["lamae",
"ind_p"]``) or a repeatable one (``set = ["pretrain.steps=200"]``, one ``--set`` each), ``true``
for a switch. The file becomes flags placed before the command line's, so a flag given on the
command line overrides the file's value (a repeatable flag adds to the file's, and a later
``--set`` of the same field wins). An unknown key, a table, or a value the option's own type
refuses is one line naming the file and the fix, exit status 2 [choice: the file is the command
line written down, checked by the same parser, so the two cannot drift apart].
"""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path
from typing import Any

from benchmark.cli.common import Renamed, UsageError

CONFIG_FLAG = "--config"


class ConfigFlag(argparse.Action):
    """``--config FILE`` in ``run``'s help; :func:`expand_config` takes it out of the command line
    before parsing, so the parser meets it only when abbreviated (``--conf``)."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        raise UsageError(f"write {CONFIG_FLAG} in full, not abbreviated")


def config_keys(run: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """The keys a config file may hold: every ``run`` option's name but --help, --config and the
    deprecated names."""
    keys = {}
    for action in run._actions:
        name = max(action.option_strings, key=len, default="")
        if not name or name in ("--help", CONFIG_FLAG) or (isinstance(action, Renamed) and action.deprecated):
            continue
        keys[name[2:]] = action
    return keys


def expand_config(argv: list[str], run: argparse.ArgumentParser) -> list[str]:
    """``run ... --config FILE ...`` -> ``run <the file's flags> ...`` (without ``--config FILE``)."""
    rest, paths = [], []
    tokens = iter(argv)
    for token in tokens:
        if token == CONFIG_FLAG:
            paths.append(next(tokens, None))
        elif token.startswith(CONFIG_FLAG + "="):
            paths.append(token.partition("=")[2])
        else:
            rest.append(token)
    if not paths:
        return argv
    if len(paths) > 1 or not paths[0]:
        raise UsageError(f"give one {CONFIG_FLAG} FILE")
    return [rest[0], *file_flags(Path(paths[0]), run, rest[1:]), *rest[1:]]


def file_flags(path: Path, run: argparse.ArgumentParser, command_line: list[str]) -> list[str]:
    """The flags a config file holds, each value checked by its option's own type; an option the
    command line gives under its deprecated name (``--out``) overrides the file's too."""
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"{CONFIG_FLAG} {path}: no such file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: not a TOML file ({exc})") from None
    keys = config_keys(run)
    renamed = {a.option_strings[0]: a.deprecated for a in run._actions if isinstance(a, Renamed) and a.deprecated}
    overridden = {renamed[name] for name in (t.partition("=")[0] for t in command_line) if name in renamed}
    flags: list[str] = []
    for key, value in data.items():
        action = keys.get(key)
        if action is None:
            raise UsageError(f"{path}: unknown key {key!r}; valid keys: {', '.join(keys)}")
        if f"--{key}" not in overridden:
            flags += option_flags(path, key, value, action)
    return flags


def option_flags(path: Path, key: str, value: Any, action: argparse.Action) -> list[str]:
    """One key's flags: ``--KEY VALUE``, ``--KEY`` for a true switch, one ``--KEY ITEM`` per item of a
    repeatable option, the items comma-joined otherwise."""
    flag = f"--{key}"
    if action.nargs == 0:
        if not isinstance(value, bool):
            raise UsageError(f"{path}: {key} = {value!r}: a switch takes true or false")
        return [flag] if value else []
    items = value if isinstance(value, list) else [value]
    if not items or any(isinstance(item, (bool, dict, list)) for item in items):
        raise UsageError(f"{path}: {key} = {value!r}: give a string, a number or a list of them")
    texts = [str(item) for item in items]
    if isinstance(action, argparse._AppendAction):
        values = texts
    else:  # one element keeps a comma: a list of seeds [3] is seed 3, not a count of 3
        values = [",".join(texts) + ("," if isinstance(value, list) and len(texts) == 1 else "")]
    for text in values:
        check_value(path, key, value, text, action)
    return [token for text in values for token in (flag, text)]


def check_value(path: Path, key: str, value: Any, text: str, action: argparse.Action) -> None:
    """A value the option refuses is reported with the file and key it came from."""
    converted: Any = text
    if callable(action.type):
        try:
            converted = action.type(text)
        except (argparse.ArgumentTypeError, ValueError, TypeError) as exc:
            raise UsageError(f"{path}: {key} = {value!r}: {exc}") from None
    if action.choices is not None and converted not in action.choices:
        raise UsageError(f"{path}: {key} = {value!r}: choose from {', '.join(map(str, action.choices))}")
