"""``python -m benchmark export-encoder``: a pretrained encoder as ``model.safetensors`` +
``config.json``, loadable with ``ecgbench.load_encoder``."""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmark.cli.common import add_plugins, add_renamed, load_plugins


def register(sub: argparse._SubParsersAction) -> None:
    encoder = sub.add_parser(
        "export-encoder", help="write a pretrained encoder as safetensors + config.json (ecgbench.load_encoder)"
    )
    encoder.set_defaults(handler=cmd_export_encoder)
    encoder.add_argument("source", type=Path, help="a result file (.json) or a pretraining checkpoint folder")
    add_renamed(
        encoder,
        "--to",
        "--out",
        "export-encoder's folder",
        "folder to write model.safetensors and config.json to",
        type=Path,
        required=True,
        metavar="DIR",
    )
    add_plugins(encoder)


def cmd_export_encoder(args: argparse.Namespace) -> int:
    from benchmark.method.exported import CONFIG, WEIGHTS
    from benchmark.run.export import export_encoder

    load_plugins(args.plugins)
    config = export_encoder(args.source, args.to)
    report, data = config["pretraining"]["report"], config["pretraining"]["dataset"]
    weights = f"pretrained {report['steps']} steps on {data}" if report else config["weights"]
    print(
        f"wrote {args.to / WEIGHTS} and {args.to / CONFIG}: {config['method']}, seed {config['pretraining']['seed']}, "
        f"{weights}; input {config['input']['window_s']:g} s at {config['input']['fs']} Hz, "
        f"{config['feature_dim']} features\n"
        f"use it: encoder = ecgbench.load_encoder({str(args.to)!r}); features = encoder(signals, lead_mask)"
    )
    return 0
