"""``python -m benchmark list``: the registered methods, datasets and protocols, the ablation
ladders and the presets."""

from __future__ import annotations

import argparse

from benchmark.cli.common import add_plugins, load_plugins
from benchmark.registry import DATASETS, METHODS, PROTOCOLS


def register(sub: argparse._SubParsersAction) -> None:
    lst = sub.add_parser("list", help="list methods, datasets, protocols and presets")
    lst.set_defaults(handler=cmd_list)
    add_plugins(lst)


def cmd_list(args: argparse.Namespace) -> int:
    from benchmark.run.ladder import LADDER_PREFIX, LADDERS
    from benchmark.run.presets import PRESETS

    load_plugins(args.plugins)
    for title, registry in (("methods", METHODS), ("datasets", DATASETS), ("protocols", PROTOCOLS)):
        print(f"{title}:")
        for name, cls in registry:
            extra = f"  [label sets: {', '.join(cls.label_sets)}]" if registry is DATASETS else ""
            print(f"  {name:<14} {cls.summary}{extra}")
        for broken in registry.broken:
            print(f"  (failed to load {broken.source}: {broken.error})")
    print("ablation ladders (--methods ladder:NAME, one table of paired tests in the leaderboard):")
    for anchor, rungs in LADDERS.items():
        print(f"  {LADDER_PREFIX + anchor:<14} " + "; ".join(rung.label for rung in rungs))
    print("presets:")
    for name, preset in PRESETS.items():
        print(f"  {name:<14} {preset.description}")
    return 0
