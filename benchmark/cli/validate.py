"""``python -m benchmark validate``: check that methods meet the plugin contract (exit status 1
when one does not); the checks are :mod:`benchmark.run.validate`'s."""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmark.cli.common import add_overrides, add_plugins, load_plugins, parse_names, registered_in_file
from benchmark.config import parse_overrides
from benchmark.registry import METHODS


def register(sub: argparse._SubParsersAction) -> None:
    check = sub.add_parser("validate", help="check that methods meet the plugin contract (exit 1 if not)")
    check.set_defaults(handler=cmd_validate)
    check.add_argument(
        "target",
        help="a method name or variant (lamae[la_tokens=patch]), an ablation ladder (ladder:lamae), 'all', "
        "or a plugin .py file (every method it registers)",
    )
    check.add_argument(
        "--presets",
        "--preset",
        dest="presets",
        type=parse_names,
        default=["smoke", "cpu"],
        help="presets whose input and model size to check (default smoke,cpu; "
        "paper runs all checks but the overfit at batch 1)",
    )
    add_overrides(
        check,
        "override a preset setting, e.g. model.dim=96 (a method's own settings go in brackets: "
        "validate 'lamae_e[reading=alpha_la_0]')",
    )
    add_plugins(check, "load another plugin file first (repeatable)")


def cmd_validate(args: argparse.Namespace) -> int:
    from benchmark.method.external_source import EXTERNAL_PREFIX
    from benchmark.method.variant import MethodVariant
    from benchmark.run.build import check_scopes, encoder_params, ladder_methods, resolve_method
    from benchmark.run.ladder import LADDER_PREFIX
    from benchmark.run.presets import ANCHOR_METHOD, get_preset
    from benchmark.run.validate import render_report, render_summary, validate_method

    load_plugins(args.plugins)
    overrides = parse_overrides(args.overrides)
    presets = [get_preset(name).with_overrides(overrides) for name in args.presets]
    target = Path(args.target)
    per_preset: dict[str, list[str] | list[MethodVariant]]
    if target.suffix == ".py" and not args.target.startswith(EXTERNAL_PREFIX):
        hint = "decorate its Method subclass with @METHODS.register('name') (from ecgbench import METHODS)"
        names = registered_in_file(target, METHODS, hint)
        per_preset = {preset.name: names for preset in presets}
    elif args.target == "all":
        per_preset = {preset.name: METHODS.names() for preset in presets}
    elif args.target.startswith(LADDER_PREFIX):  # a ladder's matched widths depend on the preset
        per_preset = {preset.name: ladder_methods(args.target, preset) for preset in presets}
    else:
        per_preset = {preset.name: [resolve_method(args.target)] for preset in presets}  # "did you mean"
    check_scopes(overrides, {}, "validation")  # the preset's own scopes only: a method's settings go in brackets
    reference = ANCHOR_METHOD
    reports, reference_params = [], {}
    for preset in presets:
        if reference in METHODS:
            reference_params[preset.name] = encoder_params(reference, preset)
        for method in per_preset[preset.name]:
            report = validate_method(method, preset, light=preset.name == "paper")
            print(render_report(report), end="\n\n", flush=True)
            reports.append(report)
    print(render_summary(reports, reference_params, reference))
    failed = [f"{r.method} ({r.preset})" for r in reports if not r.passed]
    print(
        f"\n{len(reports) - len(failed)}/{len(reports)} passed" + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0
