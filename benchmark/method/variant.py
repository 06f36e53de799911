"""Named method variants: ``lamae[la_mask_ratio=0]`` is LAMAE with one setting changed.

An ablation is a method with a few settings changed, and it deserves everything a method gets:
its own cells and result files, its own leaderboard row, its own ``validate`` report and its
own signature. A variant is written ``NAME[FIELD=VALUE,...]`` wherever a method name is
accepted (``--methods``, ``validate``, ``compare``, ``--budget``); its settings are applied on
top of the preset (:func:`benchmark.run.build.method_config`); ``--set NAME.*`` of a method is refused
with the variant to write instead.

This module is the syntax alone (no registry): splitting a comma-separated list that contains
bracketed variants, parsing one variant, and the canonical and file-name forms of its name.
:func:`benchmark.run.build.resolve_method` checks the fields and values against the method's config
and writes the canonical name: settings sorted by field, each value written as the typed value it
converts to (``la_mask_ratio=0.0`` and ``la_mask_ratio=0`` are one variant, ``lamae[la_mask_ratio=0]``).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from benchmark.config import ConfigError

#: separates a variant's settings in its file name (``lamae@la_mask_ratio=0``); never part of a
#: method name (registry names are letters, digits, ``_`` and ``-``) and quoted inside values
FILE_SEPARATOR = "@"
#: characters of a setting's value kept as they are in a file name (everything else is %-quoted),
#: safe on Linux, macOS and Windows file systems and in shells without quoting
_FILE_SAFE = "+,-._"


@dataclass(frozen=True)
class MethodVariant:
    """A registered method (``base``) with settings (field path, value text) applied to its config."""

    base: str
    settings: tuple[tuple[str, str], ...] = ()

    @property
    def name(self) -> str:
        """``base`` alone, or ``base[field=value,...]``."""
        if not self.settings:
            return self.base
        return f"{self.base}[{','.join(f'{k}={v}' for k, v in self.settings)}]"

    @property
    def overrides(self) -> dict[str, str]:
        return dict(self.settings)

    @property
    def file_name(self) -> str:
        """The name as one path component: ``lamae[la_depth=3,la_mask_ratio=0]`` ->
        ``lamae@la_depth=3@la_mask_ratio=0``. Distinct variants give distinct file names."""
        return self.base + "".join(
            f"{FILE_SEPARATOR}{quote(k, safe=_FILE_SAFE)}={quote(v, safe=_FILE_SAFE)}" for k, v in self.settings
        )


def split_names(text: str) -> list[str]:
    """``"lamae,lamae[la_mask_ratio=0,la_depth=3],ind_p"`` -> the three names: commas inside
    brackets belong to the variant."""
    names: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if depth < 0:
            raise ConfigError(f"{text!r}: ']' without a matching '['")
        if char == "," and depth == 0:
            names.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    if depth:
        raise ConfigError(f"{text!r}: '[' without a matching ']'")
    names.append("".join(current).strip())
    return [n for n in names if n]


def parse_variant(text: str) -> MethodVariant:
    """``NAME`` or ``NAME[FIELD=VALUE,...]`` (values as typed; a tuple value keeps its commas:
    ``x[lead_sets=all,I+II]``). Syntax only: fields and values are checked by
    :func:`benchmark.run.build.resolve_method`."""
    text = text.strip()
    base, bracket, rest = text.partition("[")
    base = base.strip()
    if not bracket:
        if "]" in text:
            raise ConfigError(f"method {text!r}: ']' without a matching '['")
        return MethodVariant(base)
    if not rest.endswith("]") or "[" in rest or "]" in rest[:-1]:
        raise ConfigError(
            f"method {text!r}: write a variant as NAME[FIELD=VALUE,...], e.g. lamae[la_mask_ratio=0,la_depth=3] "
            f"(one pair of brackets, nothing after them)"
        )
    settings: dict[str, str] = {}
    last = None
    for piece in rest[:-1].split(",") if rest[:-1].strip() else ():
        field, equals, value = piece.partition("=")
        if not equals:
            if last is None:
                raise ConfigError(f"method {text!r}: {piece.strip()!r} is not FIELD=VALUE")
            settings[last] += "," + piece.strip()  # the next element of a tuple value
            continue
        last = field.strip()
        if not last:
            raise ConfigError(f"method {text!r}: a setting has no field name before '='")
        if last in settings:
            raise ConfigError(f"method {text!r}: {last!r} is set twice")
        settings[last] = value.strip()
    return MethodVariant(base, tuple(sorted(settings.items())))
