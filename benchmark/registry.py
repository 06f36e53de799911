"""One generic plugin registry, used for methods, datasets and protocols.

Shape after lm-evaluation-harness (`lm_eval/api/registry.py`) and timm (`_registry.py`):
plugins register themselves with a decorator; the registry discovers them lazily on first use
from three sources, in order:

1. built-in plugin modules (the `methods/`, `datasets/` folders, `benchmark/eval/protocols/`),
2. installed distributions that declare an entry point in the registry's group
   (e.g. ``[project.entry-points."ecgbench.methods"] my_method = "my_pkg.my_method"``),
3. files passed explicitly with ``--plugin path/to/file.py``.

A plugin file that fails to import is recorded as *broken* with its error and does not stop
the others from loading; asking for a name that is not registered lists the broken plugins
and suggests close matches ("did you mean ...").
"""

from __future__ import annotations

import difflib
import functools
import importlib
import importlib.util
import pkgutil
import sys
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Generic, TypeVar

T = TypeVar("T", bound=type)


class PluginError(LookupError):
    """A plugin name or file that cannot be used; the message is meant for the end user."""


@dataclass(frozen=True)
class BrokenPlugin:
    source: str  # module name, entry point or file path
    error: str  # one line: exception type and message
    traceback: str


class Registry(Generic[T]):
    """Maps names to plugin classes of one kind (method, dataset, protocol)."""

    def __init__(self, kind: str, builtin_package: str, entry_point_group: str):
        self.kind = kind
        self.builtin_package = builtin_package
        self.entry_point_group = entry_point_group
        self._entries: dict[str, T] = {}
        self._origin: dict[str, str] = {}
        self.broken: list[BrokenPlugin] = []
        self._discovered = False
        self._loading: str | None = None
        self._bases: dict[type, str] = {}  # base class -> the name plugins import it by

    def declare_base(self, base: type, public_name: str) -> None:
        """A class plugins of this kind subclass, declared by the layer that defines it (the
        registry sits below every plugin layer and imports none of them); from then on
        :meth:`register` refuses a class that subclasses none of them, as lm-evaluation-harness's
        registry does."""
        self._bases[base] = public_name

    # -- registration ------------------------------------------------------------------------
    def register(self, name: str) -> Callable[[T], T]:
        """Class decorator: ``@METHODS.register("lamae")``. Sets ``cls.name``."""
        if not name or not name.replace("_", "").replace("-", "").isalnum() or name != name.lower():
            raise ValueError(f"{self.kind} name {name!r} must be lower-case letters, digits, '_' or '-'")

        def decorator(cls: T) -> T:
            origin = str(self._loading or getattr(cls, "__module__", "?"))
            if self._bases and not (isinstance(cls, type) and issubclass(cls, tuple(self._bases))):
                module, base = next(iter(self._bases.values())).rsplit(".", 1)
                raise PluginError(
                    f"{self.kind} {name!r} from {origin}: {cls!r} does not subclass "
                    f"{' or '.join(self._bases.values())}; write `class MyPlugin({base}):` after `from {module} import {base}`"
                )
            if name in self._entries and self._entries[name] is not cls:
                previous = self._origin[name]
                if previous != origin:
                    raise PluginError(
                        f"{self.kind} {name!r} from {origin} is already registered by {previous}; rename one of them"
                    )
            setattr(cls, "name", name)  # noqa: B010 (T is any plugin class)
            self._entries[name] = cls
            self._origin[name] = origin
            return cls

        return decorator

    # -- discovery ---------------------------------------------------------------------------
    def _import_guarded(self, source: str, load: Callable[[], object]) -> None:
        previous, self._loading = self._loading, source
        try:
            load()
        except Exception as exc:  # a broken plugin must not break the others
            self.broken.append(BrokenPlugin(source, f"{type(exc).__name__}: {exc}", traceback.format_exc()))
        finally:
            self._loading = previous

    def discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        package = importlib.import_module(self.builtin_package)
        for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
            if info.name.startswith("_"):
                continue
            module = f"{self.builtin_package}.{info.name}"
            self._import_guarded(module, functools.partial(importlib.import_module, module))
        for ep in entry_points(group=self.entry_point_group):
            self._import_guarded(f"entry point {ep.name} = {ep.value}", ep.load)

    # -- lookup ------------------------------------------------------------------------------
    def get(self, name: str) -> T:
        self.discover()
        if name in self._entries:
            return self._entries[name]
        raise PluginError(self._unknown_message(name))

    def _unknown_message(self, name: str) -> str:
        message = f"unknown {self.kind} {name!r}"
        close = difflib.get_close_matches(name, self._entries, n=3, cutoff=0.5)
        if close:
            message += f"; did you mean {' or '.join(repr(c) for c in close)}?"
        message += f" Valid {self.kind}s: {', '.join(self.names())}."
        if self.broken:
            message += " Plugins that failed to load: " + "; ".join(f"{b.source} ({b.error})" for b in self.broken)
        return message

    def names(self) -> list[str]:
        self.discover()
        return sorted(self._entries)

    def origin(self, name: str) -> str:
        self.get(name)
        return self._origin[name]

    def __contains__(self, name: str) -> bool:
        self.discover()
        return name in self._entries

    def __iter__(self) -> Iterator[tuple[str, T]]:
        self.discover()
        return iter(sorted(self._entries.items()))


METHODS: Registry = Registry("method", "ecgbench_methods", "ecgbench.methods")
DATASETS: Registry = Registry("dataset", "ecgbench_datasets", "ecgbench.datasets")
PROTOCOLS: Registry = Registry("protocol", "benchmark.eval.protocols", "ecgbench.protocols")


def import_file(path: Path, module_name: str, what: str, error: type[Exception] = PluginError) -> ModuleType:
    """Import a user's Python file under a private module name; a failure is one ``error`` naming
    the file (``what`` says what it is: "plugin file", "external encoder file")."""
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise error(f"{what} {path} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise error(f"{what} {path} failed to import: {type(exc).__name__}: {exc}") from exc
    return module


def load_plugin_file(path: str | Path) -> dict[str, list[str]]:
    """Import a plugin file given with ``--plugin``; returns the names it registered per kind.

    The file is imported under a private module name; unlike built-in plugins, a failure here
    is an error, because the user asked for this file explicitly.
    """
    path = Path(path).resolve()
    if not path.is_file() or path.suffix != ".py":
        raise PluginError(f"plugin file {path} does not exist or is not a .py file")
    registries = (METHODS, DATASETS, PROTOCOLS)
    for registry in registries:
        registry.discover()
    before = {r.kind: set(r.names()) for r in registries}
    for registry in registries:
        registry._loading = str(path)
    try:
        import_file(path, f"ecgbench_user_plugins.{path.stem}", "plugin file")
    finally:
        for registry in registries:
            registry._loading = None
    added = {r.kind: sorted(set(r.names()) - before[r.kind]) for r in registries}
    if not any(added.values()):
        raise PluginError(
            f"plugin file {path} registered nothing; decorate its class with "
            f"@METHODS.register('name') (from ecgbench import METHODS)"
        )
    return added
