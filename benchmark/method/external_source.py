"""Reading an external encoder: what it declares (:class:`EncoderSpec`), the file forms it comes
in, and its content hash — for :mod:`benchmark.method.external`, which makes it a method.

Forms (``external:PATH`` or ``external:PATH[settings]``): a spec file (``.py``: ``SPEC``,
``build()``, optional ``WEIGHTS``, ``NAME``, ``layer_id``), a TorchScript file or torch.export
program with its input in the bracket settings, or an ``export-encoder`` folder. What cannot be
read is one :class:`~benchmark.data.contract.DataError` naming the file and the fix: a missing,
unreadable or truncated file, one that fails to load, a state_dict without the code that builds
its module, a spec file that fails to import or declares nothing.
"""

from __future__ import annotations

import hashlib
import json
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmark.config import ConfigError, to_jsonable, typed_value
from benchmark.data.conditioning import STANDARDIZE
from benchmark.data.contract import LEADS, DataError
from benchmark.method.base import Method
from benchmark.method.encoder_input import MV_PER_UNIT
from benchmark.method.exported import CONFIG, WEIGHTS, load_encoder, read_encoder_config
from benchmark.method.variant import parse_variant
from benchmark.registry import import_file

EXTERNAL_PREFIX = "external:"
OUTPUTS = ("features", "tokens")
#: the names a spec file may define
SPEC_NAMES = ("SPEC", "build", "WEIGHTS", "NAME", "layer_id")
_LEAD_BY_NAME = {lead.lower(): lead for lead in LEADS}


@dataclass(frozen=True)
class EncoderSpec:
    """What an external encoder takes and returns; the suite feeds it exactly this.

    ``fs`` (Hz) and ``window_s`` (s): its input rate and length; ``leads``: its input channels in
    order, named as the suite names them (case ignored: ``AVR`` is ``aVR``); ``units``: mV, uV or
    V; ``normalise``: ``none``, ``lead`` (z-score of each lead over the window) or ``record``
    (one z-score over the record's present leads); ``lead_mask``: its forward takes
    ``(signals, lead_mask)`` with ``lead_mask`` (batch, leads) bool; ``output``: ``features``
    (batch, features) or ``tokens`` (batch, tokens, width).
    """

    fs: float
    window_s: float
    leads: tuple[str, ...] = LEADS
    units: str = "mV"
    normalise: str = "none"
    lead_mask: bool = False
    output: str = "features"

    def __post_init__(self):
        if not self.fs > 0 or not self.window_s > 0:
            raise ValueError(f"fs and window_s must be positive, got fs={self.fs}, window_s={self.window_s}")
        leads = (self.leads,) if isinstance(self.leads, str) else tuple(self.leads)
        unknown = [lead for lead in leads if str(lead).strip().lower() not in _LEAD_BY_NAME]
        if unknown:
            raise ValueError(
                f"leads {', '.join(map(str, unknown))}: the data cannot provide them; the suite's leads are "
                f"{', '.join(LEADS)} (case ignored)"
            )
        canonical = tuple(_LEAD_BY_NAME[str(lead).strip().lower()] for lead in leads)
        if not canonical or len(set(canonical)) < len(canonical):
            raise ValueError(f"leads must name at least one lead, each once, got {', '.join(map(str, leads))}")
        object.__setattr__(self, "leads", canonical)
        for name, value, valid in (
            ("units", self.units, tuple(MV_PER_UNIT)),
            ("normalise", self.normalise, STANDARDIZE),
            ("output", self.output, OUTPUTS),
        ):
            if value not in valid:
                raise ValueError(f"{name} must be one of {', '.join(valid)}, got {value!r}")
        if abs(self.fs * self.window_s - round(self.fs * self.window_s)) > 1e-6:
            raise ValueError(f"window_s {self.window_s:g} s at {self.fs:g} Hz is not a whole number of samples")

    @property
    def window(self) -> int:
        return int(round(self.fs * self.window_s))

    def describe(self) -> str:
        return (
            f"{self.window_s:g} s at {self.fs:g} Hz, {len(self.leads)} leads ({', '.join(self.leads)}), "
            f"{self.units}, normalise {self.normalise}"
        )


@dataclass
class ExternalSource:
    """A file (or folder) read as an external encoder: how to build its module, and what it is."""

    path: Path
    format: str
    spec: EncoderSpec
    build: Callable[[], nn.Module]  # a fresh module with the weights, in evaluation mode
    files: list[Path]  # what the content hash reads
    name: str = ""
    layer_id: Callable[[str], int] | None = None
    sha256: str = ""
    feature_dim: int = 0
    n_parameters: int = 0


class _Function(nn.Module):
    """A plain callable as a module (no parameters)."""

    def __init__(self, fn: Callable):
        super().__init__()
        self.fn = fn

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        return self.fn(*args)


class _ExportedMethod(nn.Module):
    """A method of an ``export-encoder`` folder: its own ``encode`` (hidden states included)."""

    def __init__(self, method: Method):
        super().__init__()
        self.method = method

    def forward(self, signals: torch.Tensor, lead_mask: torch.Tensor) -> torch.Tensor:
        return self.method.features(signals, lead_mask)


# -- reading a source ----------------------------------------------------------------------------
def _is_zip_with(path: Path, marker: str) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return any(marker in name for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _kind(path: Path) -> str:
    """What a weights file or folder is: ecgbench | export | torchscript | state_dict."""
    if path.is_dir():
        if (path / "config.json").is_file() and (path / "model.safetensors").is_file():
            return "ecgbench"
        raise DataError(
            f"{path} is a folder without config.json and model.safetensors; an external encoder folder is one "
            f"written by `python -m benchmark export-encoder`"
        )
    if not path.is_file():
        raise DataError(f"{path} does not exist; give an existing weights file (check the path)")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise DataError(f"{path} cannot be read ({exc.strerror}); make it readable") from None
    if path.suffix == ".safetensors":
        return "state_dict"
    if path.suffix == ".pt2" or _is_zip_with(path, "/archive_format"):
        return "export"
    if _is_zip_with(path, "/code/"):
        return "torchscript"
    if zipfile.is_zipfile(path):
        return "state_dict"  # torch.save's zip format
    raise DataError(
        f"{path} is not a complete TorchScript file, torch.export program, torch.save state_dict or safetensors "
        f"file (truncated, or another format); save it again (torch.jit.save, torch.export.save, torch.save)"
    )


def _load_module(path: Path, kind: str) -> nn.Module:
    """The module of a TorchScript file, a torch.export program or an export-encoder folder."""
    try:
        if kind == "torchscript":
            with warnings.catch_warnings():  # TorchScript is deprecated, and still what many encoders ship as
                warnings.filterwarnings("ignore", category=FutureWarning)
                return torch.jit.load(str(path), map_location="cpu").eval()
        if kind == "export":
            return torch.export.load(str(path)).module()
    except Exception as exc:
        what = "TorchScript file" if kind == "torchscript" else "torch.export program"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(
            f"{path}: failed to load as a {what} ({first[:200]}); save it again with "
            f"{'torch.jit.save' if kind == 'torchscript' else 'torch.export.save'} and check that it is complete"
        ) from None
    return _ExportedMethod(load_encoder(path).method.eval())


def _load_state(path: Path) -> dict[str, torch.Tensor]:
    """A state_dict from a safetensors file or a torch.save file (a plain state_dict, or one under
    the single key ``state_dict`` or ``model``, as training frameworks save them)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: cannot be read as a state_dict ({first[:200]}); save it again") from None
    if isinstance(state, dict):
        nested = [k for k in ("state_dict", "model") if isinstance(state.get(k), dict)]
        if len(nested) == 1 and not all(isinstance(v, torch.Tensor) for v in state.values()):
            state = state[nested[0]]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(
            f"{path}: expected a state_dict (parameter name -> tensor), found {type(state).__name__}; "
            f"save model.state_dict()"
        )
    return state


def _as_module(made: Any, where: Path) -> nn.Module:
    if isinstance(made, nn.Module):
        return made
    if callable(made):
        return _Function(made)
    raise DataError(f"{where}: build() returned {type(made).__name__}, not an nn.Module or a callable")


def _import_spec_file(path: Path) -> dict[str, Any]:
    module_name = f"ecgbench_external_{hashlib.sha256(str(path).encode()).hexdigest()[:12]}"
    module = import_file(path, module_name, "external encoder file", DataError)
    return {name: getattr(module, name) for name in SPEC_NAMES if hasattr(module, name)}


def _from_spec_file(path: Path, settings: dict[str, str]) -> ExternalSource:
    if settings:
        raise ConfigError(f"external:{path}: a spec file declares everything itself; drop the [{', '.join(settings)}]")
    names = _import_spec_file(path)
    build = names.get("build")
    weights = (path.parent / str(names["WEIGHTS"])).resolve() if names.get("WEIGHTS") is not None else None
    kind = _kind(weights) if weights is not None else None
    if kind == "ecgbench":
        assert weights is not None
        if "SPEC" in names or build is not None:
            raise DataError(
                f"{path}: WEIGHTS names an export-encoder folder, whose config.json declares its input; drop SPEC and build"
            )
        return _from_encoder_folder(weights, names.get("NAME"), spec_file=path)
    spec = names.get("SPEC")
    if not isinstance(spec, EncoderSpec):
        raise DataError(
            f"{path} must declare its input: SPEC = EncoderSpec(fs=..., window_s=...) (from ecgbench import EncoderSpec)"
        )
    if kind in ("torchscript", "export"):
        if build is not None:
            raise DataError(f"{path}: WEIGHTS is a {kind} file, which holds its own module; drop build()")
        assert weights is not None
        program = kind
        return ExternalSource(
            path,
            program,
            spec,
            lambda: _load_module(weights, program),
            [path, weights],
            names.get("NAME") or "",
            names.get("layer_id"),
        )
    if not callable(build):
        raise DataError(
            f"{path} needs build() returning the encoder (an nn.Module or a callable)"
            + (f": {weights} is a state_dict, which has no module of its own" if weights is not None else "")
        )

    def built() -> nn.Module:
        try:
            module = _as_module(build(), path)
        except DataError:
            raise
        except Exception as exc:
            raise DataError(f"{path}: build() failed: {type(exc).__name__}: {exc}") from None
        if weights is not None:
            incompatible = module.load_state_dict(_load_state(weights), strict=False)
            if incompatible.missing_keys or incompatible.unexpected_keys:
                raise DataError(
                    f"{weights} does not fit build()'s module of {path}: missing {incompatible.missing_keys[:3]}, "
                    f"unexpected {incompatible.unexpected_keys[:3]}"
                )
        return module.eval()

    kind = "state_dict" if weights is not None else "module"
    files = [path] + ([weights] if weights is not None else [])
    return ExternalSource(path, kind, spec, built, files, names.get("NAME") or "", names.get("layer_id"))


def _from_encoder_folder(path: Path, name: str | None = None, spec_file: Path | None = None) -> ExternalSource:
    config = read_encoder_config(path)
    declared = config["input"]
    spec = EncoderSpec(
        fs=declared["fs"],
        window_s=declared["window_s"],
        leads=tuple(declared["leads"]),
        units=declared["units"],
        lead_mask=True,
    )
    files = ([spec_file] if spec_file else []) + [path / WEIGHTS, path / CONFIG]
    return ExternalSource(path, "ecgbench", spec, lambda: _load_module(path, "ecgbench"), files, name or path.name)


def _spec_from_settings(path: Path, settings: dict[str, str]) -> EncoderSpec:
    missing = [name for name in ("fs", "window_s") if name not in settings]
    if missing:
        raise ConfigError(
            f"external:{path}: declare its input, e.g. 'external:{path}[fs=100,window_s=5]' (also leads=I,II,..., "
            f"units=mV|uV, normalise=none|lead|record, lead_mask=true, output=tokens), or write a spec file "
            f"(docs/methods-and-plugins.md, 'Evaluate your own encoder'); missing: {', '.join(missing)}"
        )
    values = {key: typed_value(EncoderSpec, key, value, f"external:{path}") for key, value in settings.items()}
    try:
        return EncoderSpec(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"external:{path}: {exc}") from None


def read_source(text: str) -> ExternalSource:
    """The external encoder named by ``external:PATH[settings]`` (not yet hashed or checked)."""
    variant = parse_variant(text.removeprefix(EXTERNAL_PREFIX))
    settings = dict(variant.settings)
    name = settings.pop("name", None)
    path = Path(variant.base).expanduser()
    if not variant.base:
        raise ConfigError(
            f"{text!r}: write external:PATH, e.g. external:encoder.pt[fs=100,window_s=5] or external:my_encoder.py"
        )
    if path.suffix == ".py":
        if not path.is_file():
            raise DataError(f"{path} does not exist; give an existing spec file (check the path)")
        source = _from_spec_file(path.resolve(), settings)
    else:
        kind = _kind(path)
        if kind == "ecgbench":
            if settings:
                raise ConfigError(
                    f"external:{path}: its config.json declares its input; drop the [{', '.join(settings)}]"
                )
            source = _from_encoder_folder(path.resolve())
        elif kind == "state_dict":
            raise DataError(
                f"{path} is a state_dict, which holds weights but no module; write a spec file with build() and "
                f"WEIGHTS = {path.name!r} (docs/methods-and-plugins.md, 'Evaluate your own encoder')"
            )
        else:
            spec = _spec_from_settings(path, settings)
            resolved = path.resolve()
            source = ExternalSource(resolved, kind, spec, lambda: _load_module(resolved, kind), [resolved])
    source.name = name or source.name
    return source


# -- identity and checks ---------------------------------------------------------------------------
def _file_digest(path: Path, digest: Any) -> None:
    if path.name == "config.json" and path.parent.joinpath("model.safetensors").is_file():
        # an export-encoder config: what defines the encoder, not when and where it was exported
        config = json.loads(path.read_text())
        defining = {k: config.get(k) for k in ("format_version", "method", "method_config", "input")}
        digest.update(json.dumps(defining, sort_keys=True).encode())
        return
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)


def tensors_digest(module: nn.Module) -> str:
    """SHA-256 of a module's tensors (names, dtypes, shapes, bytes), in name order."""
    digest = hashlib.sha256()
    unused = module.method.is_pretraining_only if isinstance(module, _ExportedMethod) else None
    for name, tensor in sorted(module.state_dict().items()):
        if unused is not None and unused(name.removeprefix("method.")):
            continue  # an export-encoder folder leaves out the decoders: initialised anew each time, never used
        data = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{data.dtype}:{tuple(data.shape)}\0".encode())
        digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def content_hash(source: ExternalSource, module: nn.Module) -> str:
    digest = hashlib.sha256(source.format.encode())
    for path in source.files:
        digest.update(b"\0file\0")
        _file_digest(path, digest)
    digest.update(json.dumps(to_jsonable(source.spec), sort_keys=True).encode())
    digest.update(tensors_digest(module).encode())
    return digest.hexdigest()
