"""Command-line overrides of typed config dataclasses: ``--set SCOPE.FIELD=VALUE``.

Values are converted with the dataclass field's own type annotation, nested dataclasses are
reached with dotted paths (``pretrain.optim.base_lr=3e-4``), and the dataclass validates the
result in ``__post_init__`` as it does for defaults.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import types
import typing
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A bad override; the message names the key and the valid choices."""


def parse_overrides(items: list[str]) -> dict[str, dict[str, str]]:
    """``["model.dim=96", "pretrain.steps=50"]`` -> ``{"model": {"dim": "96"}, ...}``."""
    out: dict[str, dict[str, str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if "[" in key:
            raise ConfigError(
                f"--set {item!r}: a method's settings go in its brackets, not in --set, "
                f"e.g. --methods 'lamae[la_mask_ratio=0,la_depth=3]'"
            )
        scope, dot, field_path = key.strip().partition(".")
        if not sep or not dot or not field_path:
            raise ConfigError(f"--set {item!r}: expected SCOPE.FIELD=VALUE, e.g. pretrain.steps=100 or model.dim=96")
        out.setdefault(scope, {})[field_path] = value.strip()
    return out


def _convert(value: str, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if value.lower() in ("none", "null"):
            return None
        return _convert(value, options[0], key)
    if origin is tuple:
        inner = typing.get_args(hint)[0]
        return tuple(_convert(v, inner, key) for v in value.split(",") if v.strip())
    if hint is bool:
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{key}={value!r}: expected true or false")
    if hint in (int, float, str, Path):
        try:
            return hint(value)
        except ValueError:
            raise ConfigError(f"{key}={value!r}: expected {hint.__name__}") from None
    raise ConfigError(f"{key}: fields of type {hint} cannot be set from the command line")


def _field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.init]


def _unknown_field(scope: str, head: str, names: list[str]) -> ConfigError:
    close = difflib.get_close_matches(head, names, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"{scope} has no setting {head!r}{hint} Valid: {', '.join(names)}")


def typed_value(cls: type, path: str, value: str, scope: str) -> Any:
    """``value`` converted to the type of dataclass ``cls``'s field ``path`` (dotted for nested
    dataclasses), without building the dataclass; unknown fields fail with "did you mean"."""
    head, _, rest = path.partition(".")
    names = _field_names(cls)
    if head not in names:
        raise _unknown_field(scope, head, names)
    hint = typing.get_type_hints(cls)[head]
    if rest:
        if not (isinstance(hint, type) and dataclasses.is_dataclass(hint)):
            raise ConfigError(f"{scope}.{head} has no settings of its own; write {scope}.{head}=VALUE")
        return typed_value(hint, rest, value, f"{scope}.{head}")
    return _convert(value, hint, f"{scope}.{head}")


def format_value(value: Any) -> str:
    """A typed setting written back as text that converts to the same value: ``0.0`` -> ``0``,
    ``True`` -> ``true``, ``(0.67, 40.0)`` -> ``0.67,40``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        text = repr(value)
        return text[:-2] if text.endswith(".0") else text
    if isinstance(value, (tuple, list)):
        return ",".join(format_value(v) for v in value)
    if value is None:
        return "none"
    return str(value)


def apply_overrides(obj: Any, overrides: dict[str, str], scope: str) -> Any:
    """A copy of dataclass ``obj`` with ``overrides`` ({dotted field: string value}) applied."""
    if not overrides:
        return obj
    hints = typing.get_type_hints(type(obj))
    names = _field_names(type(obj))
    direct: dict[str, Any] = {}
    nested: dict[str, dict[str, str]] = {}
    for path, value in overrides.items():
        head, _, rest = path.partition(".")
        if head not in names:
            raise _unknown_field(scope, head, names)
        if rest:
            nested.setdefault(head, {})[rest] = value
        else:
            direct[head] = _convert(value, hints[head], f"{scope}.{head}")
    for head, sub in nested.items():
        direct[head] = apply_overrides(getattr(obj, head), sub, f"{scope}.{head}")
    try:
        return dataclasses.replace(obj, **direct)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{scope}: {exc}") from None


def to_jsonable(obj: Any) -> Any:
    """Dataclasses, tuples and paths to plain JSON types (for results and signatures)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def from_jsonable(cls: type, data: dict, scope: str = "") -> Any:
    """The config dataclass ``cls`` from its :func:`to_jsonable` form (a result's or an exported
    encoder's configuration): nested dataclasses rebuilt, lists back to tuples where the field is
    a tuple. A key the dataclass does not know is refused — it was written by other code."""
    scope = scope or cls.__name__
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{scope}: unknown setting(s) {', '.join(unknown)} (written by another version of the code)")

    def convert(value: Any, hint: Any, key: str) -> Any:
        origin = typing.get_origin(hint)
        if origin in (typing.Union, types.UnionType):
            options = [a for a in typing.get_args(hint) if a is not type(None)]
            return None if value is None else convert(value, options[0], key)
        if isinstance(hint, type) and dataclasses.is_dataclass(hint) and isinstance(value, dict):
            return from_jsonable(hint, value, key)
        if (origin is tuple or hint is tuple) and isinstance(value, list):
            return tuple(value)
        return value

    kwargs = {k: convert(v, hints[k], f"{scope}.{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{scope}: {exc}") from None


def signature(obj: Any) -> str:
    """Stable short hash of a configuration: equal configs give equal signatures."""
    canonical = json.dumps(to_jsonable(obj), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def require_positive(config: object, *names: str) -> None:
    """Validation helper for config dataclasses: each named field must be > 0."""
    for name in names:
        if not getattr(config, name) > 0:
            raise ValueError(f"{name} must be positive, got {getattr(config, name)}")
