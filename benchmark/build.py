"""One construction path for methods, datasets and protocols, shared by ``run``, ``prepare``,
``validate`` and the tests: the preset supplies the defaults, ``--set SCOPE.FIELD=VALUE``
overrides them, and every object validates its configuration where it is built.

A ``--set`` scope names what it configures: ``input``, ``model``, ``pretrain``, a protocol, a
method or a dataset. A scope that names nothing known, or a plugin that is not part of the run,
is refused (with "did you mean"), never ignored: a typo must not run silently with the defaults.
"""

from __future__ import annotations

import dataclasses
import difflib

from benchmark.config import ConfigError, apply_overrides
from benchmark.data.contract import DatasetPlugin
from benchmark.eval.protocol import Protocol
from benchmark.eval.sweep import Sweep
from benchmark.method.base import Method, MethodConfig
from benchmark.presets import PRESET_SCOPES, REFERENCES, Preset
from benchmark.registry import DATASETS, METHODS, PROTOCOLS


def method_config(method_cls: type[Method], preset: Preset, overrides: dict) -> MethodConfig:
    """Preset's shared architecture fields, the method's own defaults, then ``--set name.*``.

    An untrained baseline (``random_init``, ``scratch``) wraps another method's architecture: its
    ``arch_config`` is that method's full config, built the same way (so ``--set lamae.*``
    reaches the untrained LAMAE too).
    """
    shared = {k: v for k, v in dataclasses.asdict(preset.model).items() if k in method_cls.Config.field_names()}
    config = apply_overrides(method_cls.Config(**shared), overrides.get(method_cls.name, {}), method_cls.name)
    if hasattr(config, "arch"):
        arch_config = method_config(METHODS.get(config.arch), preset, overrides)
        config = dataclasses.replace(config, arch_config=dataclasses.asdict(arch_config))
    return config


def build_method(name: str, preset: Preset, overrides: dict) -> Method:
    method_cls = METHODS.get(name)
    return method_cls(method_config(method_cls, preset, overrides), preset.input)


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


def resolve_methods(names: list[str], protocols: list[Protocol], add_references: bool) -> list[str]:
    """Expand ``all``, check every name, and add the untrained reference of each protocol kind."""
    if names == ["all"]:
        names = [n for n in METHODS.names() if n not in REFERENCES.values()]
    for name in names:
        METHODS.get(name)  # raises with "did you mean" for unknown names
    if add_references:
        for protocol in protocols:
            reference = REFERENCES.get(protocol.kind)
            if reference and reference not in names:
                names = [*names, reference]
    return list(dict.fromkeys(names))


def architectures(methods: list[str], preset: Preset, overrides: dict) -> list[str]:
    """The methods whose configuration the run builds: the methods and the architectures their
    untrained baselines wrap."""
    out = list(methods)
    for name in methods:
        config = method_config(METHODS.get(name), preset, overrides)
        if hasattr(config, "arch") and config.arch not in out:
            out.append(config.arch)
    return out


def check_scopes(overrides: dict, in_use: dict[str, list[str]], command: str = "run") -> None:
    """Refuse ``--set`` scopes that configure nothing in this command.

    ``in_use`` maps a kind ("method", "dataset", "protocol") to the names this command builds;
    the preset's own scopes (input, model, pretrain) are always valid.
    """
    registries = {"method": METHODS, "dataset": DATASETS, "protocol": PROTOCOLS}
    valid = [*PRESET_SCOPES, *(n for names in in_use.values() for n in names)]
    for scope in overrides:
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
        raise ConfigError(
            f"--set {scope}.*: unknown scope {scope!r}{hint} Scopes are {', '.join(PRESET_SCOPES)}, "
            f"a method, a dataset or a protocol (see `python -m benchmark list`)"
        )
