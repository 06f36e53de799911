"""One construction path for methods, datasets and protocols, shared by ``run``, ``prepare``,
``validate`` and the tests: the preset supplies the defaults, ``--set SCOPE.FIELD=VALUE``
overrides those of datasets, protocols and the preset's own scopes, a method variant's settings
(``lamae[la_mask_ratio=0]``) configure a method, and every object validates its configuration
where it is built.

A method is resolved once (:func:`method_spec`) into a :class:`~benchmark.method.spec.MethodSpec`:
its canonical variant, class and configuration, which the run carries from then on. Its settings
live in its name only, so one variant has one identity and one folder: ``--set lamae.la_depth=3``
is refused with the variant that says it, ``lamae[la_depth=3]``.

A ``--set`` scope names what it configures: ``input``, ``model``, ``pretrain``, a protocol or a
dataset. A scope that names nothing known, or a plugin that is not part of the run, is refused
(with "did you mean"), never ignored: a typo must not run silently with the defaults.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib.metadata
import logging
import math
import re

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from benchmark.config import ConfigError, apply_overrides, format_value, signature, typed_value
from benchmark.data.contract import DatasetPlugin
from benchmark.eval.protocol import Protocol
from benchmark.eval.sweep import Sweep
from benchmark.method.base import Method, MethodConfig
from benchmark.method.external import register_external
from benchmark.method.external_source import EXTERNAL_PREFIX
from benchmark.method.spec import MethodSpec
from benchmark.method.variant import MethodVariant, parse_variant
from benchmark.registry import DATASETS, METHODS, PROTOCOLS
from benchmark.run.ladder import LADDER_PREFIX, PARAMETER_TOLERANCE, ladder_rungs
from benchmark.run.presets import PRESET_SCOPES, REFERENCES, Preset

log = logging.getLogger("benchmark")


def resolve_method(text: str) -> MethodVariant:
    """A method name or variant (``NAME[FIELD=VALUE,...]``) in canonical form: the method must be
    registered (else "did you mean") and every setting a field of its config with a value of the
    field's type (else a one-line ``ConfigError``); settings sorted, values as typed. An external
    encoder (``external:PATH[...]``) is read, checked and registered under its own name
    (benchmark/method/external.py)."""
    if text.strip().startswith(EXTERNAL_PREFIX):
        return MethodVariant(register_external(text.strip()))
    parsed = parse_variant(text)
    method_cls = METHODS.get(parsed.base)
    settings = tuple(
        (field, format_value(typed_value(method_cls.Config, field, value, parsed.name)))
        for field, value in parsed.settings
    )
    return MethodVariant(parsed.base, settings)


def method_config(method: type[Method] | str | MethodVariant, preset: Preset) -> MethodConfig:
    """The preset's shared architecture fields, then the method's own defaults, then a variant's
    settings (``lamae[la_mask_ratio=0]``).

    An untrained baseline (``random_init``, ``scratch``) wraps another method's architecture: its
    ``arch_config`` is that method's full config, built the same way.
    """
    if isinstance(method, type):  # a class, registered or not (validate checks unregistered ones too)
        method_cls, variant = method, MethodVariant(method.name)
    else:
        variant = method if isinstance(method, MethodVariant) else resolve_method(method)
        method_cls = METHODS.get(variant.base)
    shared = {}
    if method_cls.uses_model_size:
        shared = {k: v for k, v in dataclasses.asdict(preset.model).items() if k in method_cls.Config.field_names()}
    config = apply_overrides(method_cls.default_config(shared), variant.overrides, variant.name)
    if hasattr(config, "arch"):
        arch_config = method_config(METHODS.get(config.arch), preset)
        config = dataclasses.replace(config, arch_config=dataclasses.asdict(arch_config))
    return config


def method_spec(method: str | MethodVariant, preset: Preset) -> MethodSpec:
    """A method or variant resolved once: its canonical variant (checked against its config,
    "did you mean" for a typo), its class and its configuration at ``preset``. A
    :class:`MethodVariant` is taken as canonical (the ladders resolve theirs)."""
    variant = method if isinstance(method, MethodVariant) else resolve_method(method)
    return MethodSpec(variant, METHODS.get(variant.base), method_config(variant, preset))


def build_method(name: str | MethodVariant, preset: Preset) -> Method:
    return method_spec(name, preset).build(preset.input)


class _ShapesOnly(TorchDispatchMode):
    """Skips in-place operations on meta tensors, which hold no values: initialising a meta
    parameter (timm's ``trunc_normal_``) otherwise runs Python decompositions, ~30 ms a tensor."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func._schema.is_mutable and args and isinstance(args[0], torch.Tensor) and args[0].is_meta:
            return args[0]
        return func(*args, **(kwargs or {}))


_ENCODER_PARAMS: dict[str, int] = {}  # counts by (method, config, input) signature, per process


def encoder_params(method: str | MethodVariant | type[Method], preset: Preset) -> int:
    """Encoder parameters (those used downstream) of a method at a preset, counted on the meta
    device without initialising anything, so that paper-scale models are sized in a second."""
    if isinstance(method, type):
        method_cls, config = method, method_config(method, preset)
    else:
        spec = method_spec(method, preset)
        method_cls, config = spec.cls, spec.config
    key = signature({"method": method_cls.name, "config": config, "input": preset.input})
    if key not in _ENCODER_PARAMS:
        with torch.device("meta"), _ShapesOnly():
            _ENCODER_PARAMS[key] = method_cls(config, preset.input).encoder_parameters()
    return _ENCODER_PARAMS[key]


def matched_width(variant: MethodVariant, field: str, anchor: str, preset: Preset) -> MethodVariant:
    """``variant`` with ``field`` (a width) set so that its encoder parameters are closest to
    ``anchor``'s at this preset; the width stays a multiple of the variant's ``heads`` and even
    (sin-cos positions), and the match must be within ``PARAMETER_TOLERANCE``."""
    target = encoder_params(anchor, preset)
    step = math.lcm(method_config(variant, preset).heads, 2)

    def with_width(width: int) -> MethodVariant:
        return MethodVariant(variant.base, tuple(sorted({**variant.overrides, field: str(width)}.items())))

    @functools.cache
    def miss(width: int) -> int:
        return abs(encoder_params(with_width(width), preset) - target)

    # parameters grow about quadratically with the width: start from that guess, then walk to
    # the closest width (they grow monotonically)
    width = getattr(method_config(variant, preset), field)
    guess = width * math.sqrt(target / encoder_params(with_width(width), preset))
    best = max(step, step * round(guess / step))
    for move in (step, -step):
        while best + move >= step and miss(best + move) < miss(best):
            best += move
    if miss(best) > PARAMETER_TOLERANCE * target:
        raise ConfigError(
            f"{variant.name}: no {field} brings its encoder within {PARAMETER_TOLERANCE:.0%} of {anchor}'s "
            f"{target} parameters at preset {preset.name} (closest: {field}={best})"
        )
    return with_width(best)


def ladder_methods(text: str, preset: Preset) -> list[MethodVariant]:
    """The canonical variants of an ablation ladder (``ladder:lamae``) at this preset."""
    anchor, rungs = ladder_rungs(text)
    variants = []
    for rung in rungs:
        variant = rung.fixed
        if rung.match_features:  # before matching: the projection's parameters count
            width = build_method(anchor, preset).feature_dim
            variant = MethodVariant(
                variant.base, tuple(sorted({**variant.overrides, "feature_dim": str(width)}.items()))
            )
        if rung.matched_field is not None:
            variant = matched_width(variant, rung.matched_field, anchor, preset)
        variants.append(resolve_method(variant.name))
    return variants


def build_dataset(name: str, preset: Preset, overrides: dict) -> DatasetPlugin:
    """A dataset configured by the preset and ``--set name.*``; a dataset made of others
    (``member_names``) gets ``build_member`` to build them the same way (``root`` set if given)."""
    dataset_cls = DATASETS.get(name)
    config = dataset_cls.Config(**preset.dataset_overrides.get(name, {}))
    dataset = dataset_cls(apply_overrides(config, overrides.get(name, {}), name))

    def build_member(member: str, root: str | None) -> DatasetPlugin:
        scoped = {**overrides.get(member, {}), **({"root": root} if root else {})}
        return build_dataset(member, preset, {**overrides, member: scoped})

    dataset.build_member = build_member
    return dataset


def build_protocols(names: list[str], preset: Preset) -> tuple[dict[str, Protocol | Sweep], dict[str, Protocol]]:
    """The requested protocols and sweeps, and every plain protocol they need, configured by
    the preset (``--set`` already applied)."""

    def build(name: str):
        protocol_cls = PROTOCOLS.get(name)
        return protocol_cls(preset.protocol_config(name, protocol_cls.Config))

    requested = {name: build(name) for name in names}
    needed = [n for item in requested.values() for n in (item.protocols if isinstance(item, Sweep) else ())]
    base = {name: item for name, item in requested.items() if not isinstance(item, Sweep)}
    for name in needed:
        if name not in base:
            base[name] = build(name)
            if isinstance(base[name], Sweep):
                raise ConfigError(f"a sweep can only run plain protocols, not the sweep {name!r}")
    return requested, base


def resolve_methods(
    names: list[str], protocols: list[Protocol], add_references: bool, preset: Preset
) -> list[MethodSpec]:
    """Expand ``all`` and ``ladder:NAME`` (the preset's ablation ladder), resolve every name and
    variant once into its spec, and add the reference baselines of each protocol kind that the
    protocol evaluates. A method asked for by name whose optional dependencies are missing is
    refused; a reference that lacks them is left out with a warning. One spec per canonical name,
    in the order asked."""
    references = {name for kind in REFERENCES.values() for name in kind}
    expanded: list[str | MethodVariant] = []
    for name in names:
        if name == "all":
            expanded += [n for n in METHODS.names() if n not in references]
        elif name.startswith(LADDER_PREFIX):
            expanded += ladder_methods(name, preset)
        else:
            expanded.append(resolve_method(name))
    specs = {spec.name: spec for spec in (method_spec(entry, preset) for entry in expanded)}
    for spec in specs.values():
        missing = spec.cls.missing_requirements()
        if missing:
            raise ConfigError(f"method {spec.name!r} needs {', '.join(missing)}: {install_hint(missing)}")
    if add_references:
        for protocol in protocols:
            for reference in REFERENCES.get(protocol.kind, ()):
                method_cls = METHODS.get(reference)
                if reference in specs or not protocol.applies_to(method_cls):
                    continue
                missing = method_cls.missing_requirements()
                if missing:
                    log.warning(
                        "reference %s left out: it needs %s (%s)", reference, ", ".join(missing), install_hint(missing)
                    )
                    continue
                specs[reference] = method_spec(reference, preset)
    return list(specs.values())


def install_hint(missing: list[str]) -> str:
    """How to install a method's missing dependencies: the ecgbench extras that provide them
    (read from the installed package's metadata), else the packages themselves."""
    extras: dict[str, set[str]] = {}
    try:
        for line in importlib.metadata.requires("ecgbench") or ():
            requirement, _, marker = line.partition(";")
            match = re.match(r"[A-Za-z0-9_.-]+", requirement.strip())
            extra = re.search(r"extra\s*==\s*[\"']([^\"']+)", marker)
            if match and extra:
                extras.setdefault(match.group(0).lower(), set()).add(extra.group(1))
    except importlib.metadata.PackageNotFoundError:
        pass
    if missing and all(name.lower() in extras for name in missing):
        names = sorted({min(extras[name.lower()]) for name in missing})
        return f"pip install 'ecgbench[{','.join(names)}]'"
    return "pip install " + " ".join(missing)


def as_variant(scope: str, settings: dict[str, str]) -> str:
    """``--set`` settings of a method written as the variant that holds them: ``lamae[la_depth=3]``."""
    return MethodVariant(scope, tuple(sorted(settings.items()))).name


def check_scopes(overrides: dict, in_use: dict[str, list[str]], command: str = "run") -> None:
    """Refuse ``--set`` scopes that configure nothing in this command, and method scopes.

    ``in_use`` maps a kind ("dataset", "protocol") to the names this command builds; the preset's
    own scopes (input, model, pretrain) are always valid. A method's settings make a variant with
    its own name, results and signature: ``--set lamae.la_depth=3`` is refused with the variant
    to write instead (under ``--set`` the variant's results would sit in the method's folder).
    """
    registries = {"dataset": DATASETS, "protocol": PROTOCOLS}
    valid = [*PRESET_SCOPES, *(n for names in in_use.values() for n in names)]
    for scope in overrides:
        if scope in METHODS:
            variant = as_variant(scope, overrides[scope])
            where = {"run": f"--methods '{variant}'", "validation": f"validate '{variant}'"}.get(command, variant)
            raise ConfigError(
                f"--set {scope}.*: a method's settings make a variant, with its own name, results and signature; "
                f"write the variant in brackets instead: {where}"
            )
        if scope in valid:
            continue
        kind = next((k for k, registry in registries.items() if scope in registry), None)
        if kind is not None:
            used = ", ".join(in_use.get(kind, [])) or "none"
            raise ConfigError(
                f"--set {scope}.*: {kind} {scope!r} is not part of this {command} ({kind}s in it: {used}); "
                f"add it to the {command} or drop the setting"
            )
        known = [*PRESET_SCOPES, *(n for registry in registries.values() for n in registry.names())]
        close = difflib.get_close_matches(scope, known, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        method = difflib.get_close_matches(scope, METHODS.names(), n=1, cutoff=0.6)
        if method and not close:
            hint = (
                f"; for the method {method[0]!r} write its settings in brackets: "
                f"{as_variant(method[0], overrides[scope])!r}."
            )
        raise ConfigError(
            f"--set {scope}.*: unknown scope {scope!r}{hint} Scopes are {', '.join(PRESET_SCOPES)}, "
            f"a dataset or a protocol (see `python -m benchmark list`); a method's settings go in its brackets"
        )
